"""Step-time model v2: seconds one engine step takes, from the batch's shape.

A pure function of (batch shape, model, hardware, parallelism, efficiencies).
``StepTimeModel`` folds everything but the shape into constants at
construction, so ``time_s`` is a few dozen float operations.
docs/performance-model.md has the equations with their units and sources.

What one step costs (all on one GPU of a TP group, summed over PP stages):

* ``gemm_s``: linear layers (QKV/O projections, MLPs, MoE experts, lm_head),
  each group at the roofline ``max(compute, weight bytes / (bandwidth *
  mem_bw_efficiency))``.  A GEMM of ``M`` rows reaches ``gemm_efficiency *
  M / (M + gemm_half_tokens)`` of the tensor peak, so its compute time is
  ``2 * params * (M + gemm_half_tokens) / (peak * gemm_efficiency)``: every
  GEMM costs as if it had ``gemm_half_tokens`` more rows.  MoE: a batch of
  ``T`` tokens, ``k`` of ``E`` experts each, touches ``n = E * (1 - (1 -
  k/E)**T)`` distinct experts in expectation; they compute ``k*T`` rows plus
  ``n * gemm_half_tokens`` and read ``n`` experts' weights.  The lm_head runs
  on one row per sequence.
* ``elementwise_s``: activation traffic of the non-GEMM kernels (norms,
  residual adds, rotary, KV-cache writes, activation function) at
  ``elementwise_bw_efficiency`` of the bandwidth.
* ``attention_prefill_s``: ``max(pairs * FLOPs per pair / (peak * eff),
  KV bytes of the chunks' contexts / (bandwidth * eff))``.
* ``attention_decode_s``: ``decode_kv_tokens`` times the larger of the
  per-token KV read time and per-token attention FLOP time (MLA decode is
  near the compute roof).
* ``communication_s``: TP all-reduces (two per layer, ring cost
  ``2 * (tp-1)/tp * bytes / (link * eff) + latency``) and PP activation
  sends between stages.
* ``overhead_s``: the GPU pays ``per_layer_overhead_s`` per layer whatever
  the work (kernel latencies).  CUDA-graph steps (pure decode, like vLLM,
  and pure-prefill steps of at most ``prefill_graph_tokens`` tokens, like
  LAPS's short-prefill buckets; padding to a bucket is not modelled) pay
  only that.  Eager steps (any step with prefill, and every step
  without graphs) also launch every kernel from the CPU: ``cpu = layers *
  (per_layer_launch_eager_s + calls * per_seq_attention_launch_s)`` with one
  attention call per prefill sequence plus one for all decodes, and the
  step takes ``max(cpu, gpu) + (1 - cpu_gpu_overlap) * min(cpu, gpu)``
  where ``gpu`` is the work plus the per-layer cost.  ``overhead_s`` is the
  step minus the work.  Both add ``fixed_step_overhead_s``.

Simplification: pipeline parallelism is priced for a single microbatch
passing through every stage, so a step is the sum over stages (the layers'
time plus the sends); pipelining of several microbatches is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.errors import ConfigError
from servesim.perf.batch_shape import BatchShape
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec
from servesim.perf.sharding import check_expert_parallelism, check_parallelism, kv_share_per_gpu, pipeline_hops
from servesim.perf.steptime_params import StepTimeParams

__all__ = ["BatchShape", "StepTime", "StepTimeModel", "StepTimeParams"]

# Activations (hidden states sent between GPUs, elementwise traffic) are bf16.
_ACT_BYTES = 2
# Rows of one query tile of the prefill attention kernels (FlashAttention on Hopper): a shorter
# chunk pays for a whole tile.
_QUERY_TILE = 128.0


@dataclass(frozen=True, slots=True)
class StepTime:
    """One step's time split into named parts, seconds.

    ``total_s`` is exactly ``gemm_s + elementwise_s + attention_prefill_s +
    attention_decode_s + communication_s + overhead_s`` (summed in that
    order) and equals ``StepTimeModel.time_s`` bit for bit.
    """

    gemm_s: float
    elementwise_s: float
    attention_prefill_s: float
    attention_decode_s: float
    communication_s: float
    overhead_s: float
    total_s: float
    graphed: bool


class StepTimeModel:
    """Prices steps of one replica: one model on ``tp * pp`` GPUs of one kind.

    ``cuda_graphs``: pure-decode steps replay a CUDA graph (no CPU launch
    cost); steps with any prefill run eager, except pure-prefill steps of at
    most ``prefill_graph_tokens`` tokens (LAPS's short-prefill graph buckets;
    0: none), which replay a graph as well.
    ``weight_bytes_per_param``: bytes each weight streams (2 = bf16, 1 =
    fp8/int8, 0.5 = int4).  ``gemm_compute``: the tensor-core rate GEMMs run
    at, ``'bf16'``, ``'fp8'`` or ``'int8'`` (``HardwareSpec.tensor_flops_s``);
    None = from the weight size (1 byte or less: FP8 where the GPU has it).
    ``kv_bytes_per_elem``: KV-cache element size.  ``expert_parallel``: MoE
    experts are placed whole on the TP ranks (EP degree = ``tensor_parallel``)
    rather than split over them; attention stays tensor-parallel and the MoE
    output is combined with the same all-reduce (vLLM's EP over the TP group;
    data-parallel attention with all-to-all dispatch is not modelled), and
    ``params.moe_load_imbalance`` slows the busiest rank.  Raises ``ConfigError`` /
    ``DeploymentError`` for impossible setups.
    """

    __slots__ = (
        "model", "hardware", "tensor_parallel", "pipeline_parallel", "params", "cuda_graphs", "expert_parallel",
        "_dense_s_per_token", "_dense_fixed_s", "_dense_weight_s",
        "_moe", "_num_experts", "_expert_miss", "_expert_s_per_token", "_expert_fixed_s",
        "_expert_weight_s_per_expert",
        "_lm_s_per_seq", "_lm_fixed_s", "_lm_weight_s", "_elementwise_s_per_token",
        "_pair_s", "_prefill_kv_s", "_decode_kv_s",
        "_comm_s_per_token", "_comm_fixed_s",
        "_gpu_overhead_s", "_graphed_overhead_s", "_eager_base_s", "_eager_per_call_s", "_exposed", "_fixed_s",
        "_decode_parts", "prefill_graph_tokens",
        "piecewise", "async_scheduling", "max_graph_tokens", "_pad", "_decode_seq_s", "_piecewise_gpu_s",
        "_piecewise_launch_s", "_host_s", "_host_per_seq_s", "_prefill_half",
    )

    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        tensor_parallel: int = 1,
        pipeline_parallel: int = 1,
        params: StepTimeParams | None = None,
        cuda_graphs: bool = True,
        weight_bytes_per_param: float = 2,
        kv_bytes_per_elem: float = 2,
        gemm_compute: str | None = None,
        expert_parallel: bool = False,
        prefill_graph_tokens: int = 0,
        graph_mode: str = "decode",
        max_graph_tokens: int = 512,
        async_scheduling: bool = False,
    ) -> None:
        check_parallelism(model, tensor_parallel, pipeline_parallel)
        check_expert_parallelism(model, tensor_parallel, expert_parallel)
        if not weight_bytes_per_param > 0 or not kv_bytes_per_elem > 0:
            raise ConfigError(
                "weight_bytes_per_param and kv_bytes_per_elem must be > 0, "
                f"got {weight_bytes_per_param!r} and {kv_bytes_per_elem!r}"
            )
        p = params if params is not None else StepTimeParams()
        self.model, self.hardware, self.params = model, hardware, p
        self.tensor_parallel, self.pipeline_parallel = tensor_parallel, pipeline_parallel
        self.cuda_graphs = bool(cuda_graphs)
        # Pure-prefill steps of at most this many tokens replay a captured graph too (0: none).
        self.prefill_graph_tokens = int(prefill_graph_tokens) if cuda_graphs else 0
        if gemm_compute is None:
            gemm_peak = hardware.gemm_peak_flops_s(weight_bytes_per_param)
        else:
            gemm_peak = hardware.tensor_flops_s(gemm_compute)
        self.expert_parallel = bool(expert_parallel)
        self._init_linear(model, hardware, p, tensor_parallel, weight_bytes_per_param, gemm_peak)
        self._init_attention(model, hardware, p, tensor_parallel, kv_bytes_per_elem)
        self._init_communication(model, hardware, p, tensor_parallel, pipeline_parallel)
        if graph_mode not in ("decode", "piecewise"):
            raise ConfigError(f"graph_mode must be 'decode' or 'piecewise', got {graph_mode!r}")
        if graph_mode == "piecewise" and (not cuda_graphs or prefill_graph_tokens):
            raise ConfigError("graph_mode 'piecewise' needs cuda_graphs and no prefill_graph_tokens")
        self.piecewise = graph_mode == "piecewise"
        self.async_scheduling = bool(async_scheduling)
        self.max_graph_tokens = int(max_graph_tokens) if self.piecewise else 0
        self._pad = capture_padding(self.max_graph_tokens)
        self._init_overheads(model, p)
        self._decode_parts: dict[int, tuple[float, float]] = {}  # batch size -> decode_time_s constants

    # ------------------------------------------------------------ constants
    def _init_linear(
        self, model: ModelSpec, hw: HardwareSpec, p: StepTimeParams, tp: int, wbytes: float, peak: float
    ) -> None:
        flops = peak * p.gemm_efficiency
        bw = hw.mem_bw_bytes_s * p.mem_bw_efficiency
        half = p.gemm_half_tokens
        # Weights every token uses, whole model, this rank's 1/tp slice.
        dense = (
            model.num_layers * model.attention_linear_params
            + model.num_dense_layers * model.dense_mlp_params
            + model.num_moe_layers * (model.shared_expert_params + model.router_params)
        ) / tp
        self._dense_s_per_token = 2 * dense / flops
        self._dense_fixed_s = half * self._dense_s_per_token
        self._dense_weight_s = dense * wbytes / bw
        self._moe = model.is_moe
        expert = model.num_moe_layers * model.expert_params / tp  # one expert, all MoE layers
        self._num_experts = float(model.num_experts)
        self._expert_miss = 1.0 - model.experts_per_token / model.num_experts if model.is_moe else 1.0
        # Expert parallelism: each GPU holds E/tp whole experts instead of a
        # 1/tp slice of every expert.  On average that is the same work and
        # the same weight bytes per GPU; but the step waits for the GPU whose
        # experts drew the most tokens, so routed rows scale by the imbalance.
        imbalance = p.moe_load_imbalance if self.expert_parallel else 1.0
        moe_flops = flops if p.moe_gemm_efficiency is None else peak * p.moe_gemm_efficiency
        moe_bw = bw if p.moe_bw_efficiency is None else hw.mem_bw_bytes_s * p.moe_bw_efficiency
        self._expert_s_per_token = 2 * model.experts_per_token * expert * imbalance / moe_flops
        self._expert_fixed_s = half * 2 * expert / moe_flops  # per touched expert
        self._expert_weight_s_per_expert = expert * wbytes / moe_bw
        head = model.embedding_params / tp  # lm_head, vocab-parallel over TP
        self._lm_s_per_seq = 2 * head / flops
        self._lm_fixed_s = half * self._lm_s_per_seq
        self._lm_weight_s = head * wbytes / bw
        self._elementwise_s_per_token = (
            model.num_layers * _elementwise_elems_per_token_layer(model, tp) * _ACT_BYTES
            / (hw.mem_bw_bytes_s * p.elementwise_bw_efficiency)
        )

    def _init_attention(self, model: ModelSpec, hw: HardwareSpec, p: StepTimeParams, tp: int, kvbytes: float) -> None:
        flops = hw.bf16_flops_s * p.attn_flops_efficiency
        bw = hw.mem_bw_bytes_s * p.attn_bw_efficiency
        # Only full-attention layers read a KV cache and pay per (query, key) pair
        # (hybrid-attention models: the linear-attention layers' cost is not modelled).
        layers = model.num_kv_layers
        kv_bytes_per_token = layers * model.kv_elems_per_token_per_layer * kvbytes * kv_share_per_gpu(model, tp)
        self._pair_s = layers * model.attention_flops_per_pair / tp / flops
        self._prefill_kv_s = kv_bytes_per_token / bw
        decode_flop_s = layers * model.decode_attention_flops_per_kv_token / tp / flops
        self._decode_kv_s = max(kv_bytes_per_token / bw, decode_flop_s)

    def _init_communication(
        self, model: ModelSpec, hw: HardwareSpec, p: StepTimeParams, tp: int, pp: int
    ) -> None:
        token_bytes = model.hidden_size * _ACT_BYTES
        per_token = fixed = 0.0
        if tp > 1:
            link = hw.scaleup_bytes_s if tp <= hw.gpus_per_node else hw.internode_bytes_s
            ring = 2 * (tp - 1) / tp
            per_token += 2 * model.num_layers * ring * token_bytes / (link * p.link_efficiency)
            fixed += 2 * model.num_layers * p.allreduce_latency_s
        if pp > 1:
            intra, inter = pipeline_hops(tp, pp, hw.gpus_per_node)
            per_token += token_bytes * (
                intra / (hw.scaleup_bytes_s * p.link_efficiency)
                + inter / (hw.internode_bytes_s * p.link_efficiency)
            )
            fixed += (pp - 1) * p.p2p_latency_s
        self._comm_s_per_token = per_token
        self._comm_fixed_s = fixed

    def _init_overheads(self, model: ModelSpec, p: StepTimeParams) -> None:
        layers = model.num_layers
        self._fixed_s = p.fixed_step_overhead_s
        self._gpu_overhead_s = layers * p.per_layer_overhead_s
        self._graphed_overhead_s = self._gpu_overhead_s + self._fixed_s
        self._eager_base_s = layers * p.per_layer_launch_eager_s
        self._eager_per_call_s = layers * p.per_seq_attention_launch_s
        self._exposed = 1.0 - p.cpu_gpu_overlap
        # Piecewise (vLLM) engine: per-sequence attention work, the GPU's fixed cost of a
        # graphed step, the host's launches of a piecewise step, and its scheduling work.
        self._decode_seq_s = model.num_kv_layers * p.attn_decode_per_seq_s
        self._prefill_half = p.attn_prefill_half_tokens
        self._piecewise_gpu_s = self._gpu_overhead_s + p.gpu_step_overhead_s
        self._piecewise_launch_s = layers * p.piecewise_launch_s
        self._host_s = p.fixed_step_overhead_s
        self._host_per_seq_s = p.per_seq_step_overhead_s

    # ------------------------------------------------------------- hot path
    def time_s(self, shape: BatchShape) -> float:
        """Seconds the step takes; 0.0 for a step with no tokens.

        Same arithmetic, in the same order, as ``breakdown`` and
        ``decode_time_s`` and ``decode_times_s`` (tests hold them bit-identical).
        """
        t = shape.num_tokens
        if t == 0:
            return 0.0
        if self.piecewise:
            return self._piecewise_parts(shape)[5]
        # _gemm_s and breakdown's eager branch, inlined: this is the
        # simulator's hot path, and a method call costs ~0.1 us.
        gemm = t * self._dense_s_per_token + self._dense_fixed_s
        if gemm < self._dense_weight_s:
            gemm = self._dense_weight_s
        if self._moe:
            touched = self._num_experts * (1.0 - self._expert_miss**t)
            routed = t * self._expert_s_per_token + touched * self._expert_fixed_s
            read = touched * self._expert_weight_s_per_expert
            gemm += routed if routed > read else read
        head = shape.num_seqs * self._lm_s_per_seq + self._lm_fixed_s
        gemm += head if head > self._lm_weight_s else self._lm_weight_s
        work = gemm + t * self._elementwise_s_per_token
        pairs = shape.prefill_attn_pairs * self._pair_s
        if self._prefill_half > 0.0 and shape.num_prefill_seqs > 0:
            pairs = self._prefill_pairs_s(shape)
        ctx = shape.prefill_kv_tokens * self._prefill_kv_s
        work += pairs if pairs > ctx else ctx
        work += shape.decode_kv_tokens * self._decode_kv_s
        work += t * self._comm_s_per_token + self._comm_fixed_s
        if self.cuda_graphs and (
            shape.num_prefill_seqs == 0 or (shape.num_decode_seqs == 0 and t <= self.prefill_graph_tokens)
        ):
            return work + self._graphed_overhead_s
        cpu = self._eager_base_s + (shape.num_prefill_seqs + (shape.num_decode_seqs > 0)) * self._eager_per_call_s
        gpu = work + self._gpu_overhead_s
        if cpu > gpu:
            overhead = cpu + self._exposed * gpu - work
        else:
            overhead = self._gpu_overhead_s + self._exposed * cpu
        return work + (overhead + self._fixed_s)

    # ----------------------------------------------------------- the parts
    def _gemm_s(self, t: int, num_seqs: int) -> float:
        gemm = t * self._dense_s_per_token + self._dense_fixed_s
        if gemm < self._dense_weight_s:
            gemm = self._dense_weight_s
        if self._moe:
            touched = self._num_experts * (1.0 - self._expert_miss**t)
            routed = t * self._expert_s_per_token + touched * self._expert_fixed_s
            read = touched * self._expert_weight_s_per_expert
            gemm += routed if routed > read else read
        head = num_seqs * self._lm_s_per_seq + self._lm_fixed_s
        gemm += head if head > self._lm_weight_s else self._lm_weight_s
        return gemm

    def breakdown(self, shape: BatchShape) -> StepTime:
        """The step's time by component (see the module docstring)."""
        t = shape.num_tokens
        if self.piecewise and t > 0:
            return self._piecewise_breakdown(shape)
        graphed = self.cuda_graphs and (
            shape.num_prefill_seqs == 0 or (shape.num_decode_seqs == 0 and t <= self.prefill_graph_tokens)
        )
        if t == 0:
            return StepTime(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, graphed)
        gemm = self._gemm_s(t, shape.num_seqs)
        elementwise = t * self._elementwise_s_per_token
        pairs = self._prefill_pairs_s(shape)
        ctx = shape.prefill_kv_tokens * self._prefill_kv_s
        prefill = pairs if pairs > ctx else ctx
        decode = shape.decode_kv_tokens * self._decode_kv_s
        comm = t * self._comm_s_per_token + self._comm_fixed_s
        work = gemm + elementwise + prefill + decode + comm
        if graphed:
            overhead = self._graphed_overhead_s
        else:
            calls = shape.num_prefill_seqs + (shape.num_decode_seqs > 0)
            overhead = self._eager_overhead_s(work, calls) + self._fixed_s
        total = gemm + elementwise + prefill + decode + comm + overhead
        return StepTime(gemm, elementwise, prefill, decode, comm, overhead, total, graphed)

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        """``time_s`` of one pure-decode step of ``num_decode_seqs`` sequences, bit for bit.

        The simulator prices decode stretches one step at a time with this:
        everything but the KV read depends on the batch size only and is
        cached per size, so a call is a handful of float operations.
        """
        n = num_decode_seqs
        if n == 0:
            return 0.0
        parts = self._decode_parts.get(n)
        if parts is None:
            parts = self._decode_parts[n] = self._decode_constants(n)
        if self.piecewise:
            work, seqs, comm, gpu_fixed, cpu, launch = parts
            total = (work + (decode_kv_tokens * self._decode_kv_s + seqs)) + comm
            gpu = total + gpu_fixed
            return _combine(gpu, cpu, launch, self.async_scheduling)
        work, comm = parts
        total = (work + decode_kv_tokens * self._decode_kv_s) + comm
        if self.cuda_graphs:
            return total + self._graphed_overhead_s
        return total + (self._eager_overhead_s(total, 1) + self._fixed_s)

    def _eager_overhead_s(self, work: float, calls: int) -> float:
        """Time an eager step adds to its GPU ``work`` (s): launches of ``calls`` attention calls
        per layer on the CPU, overlapped with the GPU's work and per-layer cost."""
        cpu = self._eager_base_s + calls * self._eager_per_call_s
        gpu = work + self._gpu_overhead_s
        if cpu > gpu:
            return cpu + self._exposed * gpu - work
        return self._gpu_overhead_s + self._exposed * cpu

    def _decode_constants(self, n: int) -> tuple:
        # The same expressions, in the same order, as time_s for a pure-decode shape.
        if self.piecewise:
            return self._piecewise_decode_constants(n)
        work = self._gemm_s(n, n) + n * self._elementwise_s_per_token
        pairs = 0 * self._pair_s
        ctx = 0 * self._prefill_kv_s
        work += pairs if pairs > ctx else ctx
        return work, n * self._comm_s_per_token + self._comm_fixed_s

    # ------------------------------------------------- piecewise (vLLM) engine
    def _piecewise_parts(self, shape: BatchShape) -> tuple[float, float, float, float, float, float, bool]:
        """``(gemm, elementwise, prefill attention, decode attention, communication, step time,
        graphed)`` of a step on an engine with piecewise CUDA graphs: the one computation behind
        ``time_s`` and ``breakdown`` for that engine.

        A step of at most ``max_graph_tokens`` tokens replays captured graphs, its tokens
        padded up to the next capture size (the GEMMs, elementwise kernels and collectives
        run on the padded rows); a pure-decode step replays one full graph, a step with
        prompt tokens replays the pieces between attention calls and launches attention
        eagerly (``piecewise_launch_s`` per layer of host time).  Larger steps run eager.
        The host's scheduling work (``fixed_step_overhead_s`` + ``per_seq_step_overhead_s``
        per sequence) and launches overlap the GPU's work with asynchronous scheduling
        (the step takes the longer of the two), else they add to it.
        """
        t = shape.num_tokens
        graphed = t <= self.max_graph_tokens
        rows = self._pad[t] if graphed else t
        gemm = self._gemm_s(rows, shape.num_seqs)
        elementwise = rows * self._elementwise_s_per_token
        pairs = self._prefill_pairs_s(shape)
        ctx = shape.prefill_kv_tokens * self._prefill_kv_s
        prefill = pairs if pairs > ctx else ctx
        decode = shape.decode_kv_tokens * self._decode_kv_s + shape.num_decode_seqs * self._decode_seq_s
        comm = rows * self._comm_s_per_token + self._comm_fixed_s
        # Summed in this order, as decode_time_s does for a pure-decode step (bit for bit).
        work = gemm + elementwise
        work += prefill
        work += decode
        work += comm
        gpu = work + self._piecewise_gpu_s
        cpu = self._host_s + shape.num_seqs * self._host_per_seq_s
        if graphed:
            launch = self._piecewise_launch_s if shape.num_prefill_seqs > 0 else 0.0
        else:
            launch = self._eager_base_s + (shape.num_prefill_seqs + (shape.num_decode_seqs > 0)) * self._eager_per_call_s
        return gemm, elementwise, prefill, decode, comm, _combine(gpu, cpu, launch, self.async_scheduling), graphed

    def _prefill_pairs_s(self, shape: BatchShape) -> float:
        """Compute time of the prefill chunks' attention: their query-key pairs at the efficiency of
        their mean chunk length (at least one 128-row query tile), ``attn_prefill_half_tokens``."""
        pairs = shape.prefill_attn_pairs * self._pair_s
        if self._prefill_half > 0.0 and shape.num_prefill_seqs > 0:
            q = (shape.num_tokens - shape.num_decode_seqs) / shape.num_prefill_seqs
            if q < _QUERY_TILE:
                q = _QUERY_TILE
            pairs = pairs * (1.0 + self._prefill_half / q)
        return pairs

    def _piecewise_breakdown(self, shape: BatchShape) -> StepTime:
        gemm, elementwise, prefill, decode, comm, total, graphed = self._piecewise_parts(shape)
        overhead = total - (gemm + elementwise + prefill + decode + comm)
        # Summed in the documented order, the parts may differ from total in the last bit: report total as priced.
        return StepTime(gemm, elementwise, prefill, decode, comm, overhead, total, graphed)

    def _piecewise_decode_constants(self, n: int) -> tuple[float, float, float, float, float, float]:
        graphed = n <= self.max_graph_tokens
        rows = self._pad[n] if graphed else n
        work = self._gemm_s(rows, n) + rows * self._elementwise_s_per_token
        pairs = 0 * self._pair_s
        ctx = 0 * self._prefill_kv_s
        work += pairs if pairs > ctx else ctx
        comm = rows * self._comm_s_per_token + self._comm_fixed_s
        cpu = self._host_s + n * self._host_per_seq_s
        # An eager decode launches its kernels from the host (no prompt: one attention call).
        launch = 0.0 if graphed else self._eager_base_s + 1 * self._eager_per_call_s
        return work, n * self._decode_seq_s, comm, self._piecewise_gpu_s, cpu, launch

    def decode_times_s(self, num_decode_seqs: int, decode_kv_tokens: np.ndarray) -> np.ndarray:
        """``time_s`` of pure-decode steps, vectorised over their KV sizes.

        Element ``i`` equals ``time_s(BatchShape(n, n, 0, 0, 0, n,
        decode_kv_tokens[i]))`` bit for bit, with ``n = num_decode_seqs``.
        Returns a float64 array of ``decode_kv_tokens``'s shape, seconds.
        """
        kv = np.asarray(decode_kv_tokens)
        # Analysis helper, not the simulator's hot path: the scalar formula
        # element by element keeps a single definition of the arithmetic.
        return np.array([self.decode_time_s(num_decode_seqs, int(k)) for k in kv.ravel()], dtype=np.float64).reshape(
            kv.shape
        )

    def __repr__(self) -> str:
        return (
            f"StepTimeModel({self.model.id} on {self.tensor_parallel * self.pipeline_parallel} x "
            f"{self.hardware.id}, tp={self.tensor_parallel}, pp={self.pipeline_parallel}, "
            f"cuda_graphs={self.cuda_graphs})"
        )


def _elementwise_elems_per_token_layer(model: ModelSpec, tp: int) -> float:
    """Activation elements one token's non-GEMM kernels read plus write in one layer, per GPU.

    Assumes fused kernels touching each tensor once: two RMSNorms (read +
    write the hidden state), two residual adds (two reads, one write), rotary
    embedding on queries and keys (read + write), the KV-cache write (read +
    write new K/V), and the gated activation (read gate and up, write one).
    Norms and adds run on the full hidden state on every TP rank; the rest
    is split by TP.
    """
    if model.attention == "mla":
        rotary = model.num_heads * model.qk_rope_head_dim + model.qk_rope_head_dim  # type: ignore[operator]
    else:
        rotary = (model.num_heads + model.num_kv_heads) * model.head_dim  # type: ignore[operator]
    kv_write = model.kv_elems_per_token_per_layer * kv_share_per_gpu(model, tp) * tp
    sharded = 2 * rotary + 2 * kv_write + 3 * model.mlp_width_per_token
    return 10 * model.hidden_size + sharded / tp


def _combine(gpu: float, host: float, launch: float, overlapped: bool) -> float:
    """A step's time from its GPU time, the host's scheduling work and its kernel launches (s).

    With asynchronous scheduling the host prepares the next step while the GPU runs this
    one, so the step takes the longer of the two; without it the scheduling work comes
    first and only the launches overlap the GPU.
    """
    if overlapped:
        cpu = host + launch
        return gpu if gpu > cpu else cpu
    return (gpu if gpu > launch else launch) + host


def capture_sizes(max_graph_tokens: int) -> list[int]:
    """vLLM's default CUDA-graph capture sizes up to ``max_graph_tokens``: 1, 2, 4, then every
    8 up to 248, then every 16 (``CompilationConfig`` in vLLM v0.11 onwards)."""
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, max_graph_tokens + 1, 16))
    return [s for s in sizes if s <= max_graph_tokens]


def capture_padding(max_graph_tokens: int) -> list[int]:
    """``pad[t]``: the capture size a step of ``t`` tokens runs at (t <= max_graph_tokens)."""
    pad = [0] * (max_graph_tokens + 1)
    sizes = capture_sizes(max_graph_tokens)
    if sizes and sizes[-1] < max_graph_tokens:
        sizes.append(max_graph_tokens)
    j = 0
    for t in range(1, max_graph_tokens + 1):
        while sizes[j] < t:
            j += 1
        pad[t] = sizes[j]
    return pad
