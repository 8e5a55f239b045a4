"""``StepTimeParams``: the named efficiencies and fixed costs of the step-time model.

Two kinds of numbers live here:

* efficiencies, fractions of a hardware peak (dense tensor FLOP/s, memory
  bandwidth, link bandwidth).  They describe how well kernels use a chip, so
  they carry over unchanged to every GPU of the catalog: a GPU's achieved
  rate is its own peak times the fraction;
* fixed costs in seconds: GPU time per kernel-bearing layer and CPU time to
  launch kernels.  They are latencies of the driver and of the host's
  framework, not of the chip's throughput, so they carry over unchanged too.

The defaults of the first ten fields are the H100 calibration, ``servesim
calibrate`` run on ``shared/calibration/h100/llama-3-8b_steps.csv`` (64 steps
of a Llama-3-8B-shaped model on one H100 SXM, eager PyTorch 2.11 with CUDA
graphs for decode; see docs/performance-model.md) and rounded to two or three
digits; the calibration's priors, which come from physics and public
measurements only, are in ``servesim.perf.calibrate.PRIORS``.  The last five
fields (collectives, per-step host time, MoE load imbalance) have no
calibration data and keep physical defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FIELD_UNITS", "FITTED_FIELDS", "StepTimeParams"]


class StepTimeParams(BaseModel):
    """Efficiencies (fractions of a hardware peak) and fixed costs (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_efficiency: float = Field(
        0.77,
        gt=0,
        le=1,
        description=(
            "Plateau fraction of the dense tensor peak (FLOP/s) that linear layers reach once a GEMM has "
            "many rows (tokens).  H100 calibration 0.77; the card's own square 8192^3 BF16 GEMM ran at 0.80."
        ),
    )
    gemm_half_tokens: float = Field(
        72.0,
        gt=0,
        description=(
            "Rows (tokens) at which a GEMM reaches half of gemm_efficiency: the efficiency at M rows is "
            "gemm_efficiency * M / (M + gemm_half_tokens), so each GEMM costs as if it had this many extra "
            "rows (tile padding, pipeline fill, last partial wave).  Tokens; H100 calibration 72."
        ),
    )
    mem_bw_efficiency: float = Field(
        0.88,
        gt=0,
        le=1,
        description=(
            "Fraction of peak memory bandwidth at which linear layers stream their weights when memory-bound "
            "(small batches).  H100 calibration 0.88; the card's device-to-device copy ran at 0.90."
        ),
    )
    elementwise_bw_efficiency: float = Field(
        0.28,
        gt=0,
        le=1,
        description=(
            "Fraction of peak memory bandwidth at which the non-GEMM kernels (norms, residual adds, rotary, "
            "KV-cache writes, activation) move the bytes a fused implementation would move.  Below the copy "
            "rate when the framework runs them unfused (several passes, fp32 intermediates): H100 "
            "calibration (eager PyTorch) 0.28; fused serving kernels approach 0.9."
        ),
    )
    attn_flops_efficiency: float = Field(
        0.57,
        gt=0,
        le=1,
        description=(
            "Fraction of the BF16 peak (FLOP/s) that attention reaches when compute-bound (prefill; MLA "
            "decode).  H100 calibration 0.57, in the FlashAttention-3/cuDNN range (0.6-0.75 of peak for "
            "long causal sequences per the FlashAttention-3 paper; FlashAttention-2 reaches ~0.35)."
        ),
    )
    attn_prefill_half_tokens: float = Field(
        0.0,
        ge=0,
        description=(
            "Prompt chunk length (tokens) at which compute-bound prefill attention reaches half of "
            "attn_flops_efficiency: the efficiency for chunks of q tokens (at least one 128-row query tile) "
            "is attn_flops_efficiency * q / (q + this).  0 = the same efficiency for every length (the plain "
            "harness's calibration); the vllm engine sets it from vLLM's attention kernel tables (~1000 on Hopper)."
        ),
    )
    attn_bw_efficiency: float = Field(
        0.88,
        gt=0,
        le=1,
        description=(
            "Fraction of peak memory bandwidth at which attention reads the KV cache (decode; cached "
            "prefixes of prefill chunks).  H100 calibration 0.88."
        ),
    )
    per_layer_overhead_s: float = Field(
        89e-6,
        ge=0,
        description=(
            "GPU time per layer per step that does not scale with the work: each of a layer's ~30 kernels "
            "pays a few microseconds of launch latency, ramp-up and tail, graphed or eager.  Seconds per "
            "layer; H100 calibration 89 us (what separates a batch-1 graphed decode, 7.8 ms, from its "
            "weight streaming, 5.1 ms)."
        ),
    )
    per_layer_launch_eager_s: float = Field(
        141e-6,
        ge=0,
        description=(
            "Host CPU time to launch one layer's kernels other than attention in eager mode, seconds per "
            "layer (framework dispatch plus driver launch, ~5 us per op).  H100 calibration 141 us."
        ),
    )
    per_seq_attention_launch_s: float = Field(
        362e-6,
        ge=0,
        description=(
            "Host CPU time of one attention call in one layer in eager mode, seconds.  Each prefill sequence "
            "makes its own call; all decode sequences share one.  H100 calibration 362 us (the measured engine "
            "calls attention once per prompt); set 0 and fold it into per_layer_launch_eager_s for engines "
            "with one variable-length attention call per layer."
        ),
    )
    cpu_gpu_overlap: float = Field(
        0.87,
        ge=0,
        le=1,
        description=(
            "In eager steps, the fraction of the shorter of CPU launch time and GPU time that runs "
            "concurrently with the longer: step = max + (1 - overlap) * min.  1 = perfect overlap; below 1 "
            "where launches start the step, synchronise or wait.  H100 calibration 0.87."
        ),
    )
    fixed_step_overhead_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Per-step CPU time outside the forward pass (scheduling, sampling, output), seconds.  0 because "
            "the calibration rows time only the forward pass; serving engines add ~1 ms."
        ),
    )
    per_seq_step_overhead_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Per-step CPU time for each sequence in the batch outside the forward pass (input preparation, "
            "sampling bookkeeping, output processing), seconds per sequence.  0 for the plain harness."
        ),
    )
    gpu_step_overhead_s: float = Field(
        0.0,
        ge=0,
        description=(
            "GPU time per step outside the layers (logits gather, sampling kernels, input copies), seconds. "
            "0 for the plain harness, whose rows time the forward pass only."
        ),
    )
    attn_decode_per_seq_s: float = Field(
        0.0,
        ge=0,
        description=(
            "GPU time per decoding sequence per layer of the decode attention kernel beyond its KV read "
            "(per-sequence work-splitting and reduction), seconds.  Set from vLLM's kernel tables for the vllm engine."
        ),
    )
    piecewise_launch_s: float = Field(
        30e-6,
        ge=0,
        description=(
            "Host CPU time per layer to run a piecewise-CUDA-graph step (vLLM: the graphed pieces between "
            "attention calls replayed, attention launched eagerly), seconds per layer."
        ),
    )
    moe_gemm_efficiency: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "Plateau fraction of the dense tensor peak that MoE expert GEMMs reach (a fused MoE kernel: gather, "
            "grouped GEMM, scatter); null = gemm_efficiency."
        ),
    )
    moe_bw_efficiency: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Fraction of peak memory bandwidth at which MoE experts stream their weights; null = mem_bw_efficiency.",
    )
    allreduce_latency_s: float = Field(
        10e-6,
        ge=0,
        description="Fixed latency of one tensor-parallel all-reduce, seconds (NCCL small-message scale).",
    )
    p2p_latency_s: float = Field(
        10e-6,
        ge=0,
        description="Fixed latency of one pipeline-stage activation send, seconds (aiconfigurator uses 10 us).",
    )
    link_efficiency: float = Field(
        0.8,
        gt=0,
        le=1,
        description=(
            "Fraction of per-direction link bandwidth that collectives and sends reach; 0.8 = aiconfigurator's "
            "bandwidth derate, close to NCCL ring bus bandwidth on NVLink."
        ),
    )
    moe_load_imbalance: float = Field(
        1.0,
        ge=1,
        description=(
            "With expert parallelism: routed tokens on the busiest GPU divided by the mean over GPUs "
            "(1 = perfectly balanced).  The step waits for the busiest GPU, so its expert GEMMs scale by this. "
            "Without expert parallelism every GPU holds a slice of every expert and the load is balanced."
        ),
    )


# The fields ``servesim calibrate`` fits (the rest have no calibration data).
FITTED_FIELDS: tuple[str, ...] = (
    "gemm_efficiency",
    "gemm_half_tokens",
    "mem_bw_efficiency",
    "elementwise_bw_efficiency",
    "attn_flops_efficiency",
    "attn_bw_efficiency",
    "per_layer_overhead_s",
    "per_layer_launch_eager_s",
    "per_seq_attention_launch_s",
    "cpu_gpu_overlap",
)

# Unit of each fitted field, as calibration files print it.
FIELD_UNITS: dict[str, str] = {
    "gemm_efficiency": "fraction of the dense tensor peak",
    "gemm_half_tokens": "tokens",
    "mem_bw_efficiency": "fraction of peak memory bandwidth",
    "elementwise_bw_efficiency": "fraction of peak memory bandwidth",
    "attn_flops_efficiency": "fraction of the BF16 peak",
    "attn_bw_efficiency": "fraction of peak memory bandwidth",
    "per_layer_overhead_s": "s per layer",
    "per_layer_launch_eager_s": "s per layer",
    "per_seq_attention_launch_s": "s per attention call per layer",
    "cpu_gpu_overlap": "fraction of the shorter of CPU and GPU time",
    "fixed_step_overhead_s": "s per step",  # fitted with `servesim calibrate --step-overhead`
}
