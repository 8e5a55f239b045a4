"""The ``cluster`` section of a scenario: the deployment and its topology.

``ClusterConfig`` holds the replicas' model, GPU, parallelism and memory
settings, and the optional features each replica or the topology may have:
prefill/decode disaggregation (``DisaggregationConfig`` with its KV link and
run-time controller), prefill offload to a remote cluster, semi-PD, KV
compression, MoE expert offloading, RAG chunk caches, KV pinning for agents,
LoRA adapters, GPU power (``PowerConfig``, with a row budget), lower KV
tiers, and heterogeneous pools (``PoolConfig``).  docs/cluster.md,
docs/memory.md and docs/operations.md describe what each one models;
``servesim.config`` assembles the sections into a ``ScenarioConfig``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from servesim.cluster.power_budget_config import RowPowerConfig
from servesim.perf.dtypes import KvCacheDtype, WeightDtype

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)  # finite numbers only


class KvLinkConfig(BaseModel):
    """The link each prefill replica sends KV caches over (prefill/decode disaggregation)."""

    model_config = _FROZEN

    bandwidth_gbps: float = Field(
        200.0,
        gt=0,
        description=(
            "Link bandwidth per prefill replica (Gbit/s, 1e9 bits): e.g. 200 for an RDMA NIC, "
            "3600 for NVLink within a node, 25 for Ethernet."
        ),
    )
    latency_s: float = Field(10e-6, ge=0, description="One-way latency of a transfer (s).")
    layerwise: bool = Field(
        False,
        description=(
            "Stream each layer's KV cache while the prefill runs (it may start when the prompt's prefill "
            "starts; only the last layer's share is left after it ends) instead of sending it whole afterwards."
        ),
    )


class PdControllerConfig(BaseModel):
    """A controller that moves replicas between the prefill and decode pools at run time
    (in the spirit of P/D-Serve): it looks at the pools at arrivals, at most every
    ``interval_s``, and switches one replica at a time, which first drains and then
    spends ``switch_s`` changing role."""

    model_config = _FROZEN

    interval_s: float = Field(5.0, gt=0, description="Least time between two looks at the pools (s).")
    switch_s: float = Field(2.0, ge=0, description="Time a drained replica needs to change role (s).")
    prefill_queue_high: float = Field(
        2.0, gt=0, description="Mean outstanding prompts per prefill replica above which a decode replica turns to prefill (count)."
    )
    decode_batch_high: float = Field(
        32.0,
        gt=0,
        description=(
            "Mean outstanding requests per decode replica (its batch) above which a prefill replica turns to decode; "
            "a decode replica turns to prefill only while the decode pool stays under half of it (count)."
        ),
    )


class DisaggregationConfig(BaseModel):
    """Prefill/decode disaggregation (xPyD): prompts run on prefill replicas, their KV cache moves
    to a decode replica, which generates the rest of the output."""

    model_config = _FROZEN

    prefill_replicas: int = Field(1, ge=1, description="Replicas that run prompts (count).")
    decode_replicas: int = Field(1, ge=1, description="Replicas that generate output tokens (count).")
    link: KvLinkConfig = Field(default_factory=KvLinkConfig, description="Link from each prefill replica to the decode pool.")
    controller: PdControllerConfig | None = Field(
        None, description="Move replicas between the pools at run time (null: the split stays as configured)."
    )
    forward_queue_len: int | None = Field(
        None,
        ge=1,
        description=(
            "A prefill replica with this many outstanding prompts rejects a new one, which is forwarded to the "
            "prefill replica with the fewest (as P/D-Serve does); null: never (count)."
        ),
    )
    prefill_hardware: str | None = Field(
        None, description="GPU catalog id of the prefill pool, if not cluster.hardware (e.g. compute-dense GPUs for prompts)."
    )
    prefill_tensor_parallel: int | None = Field(
        None, ge=1, description="Tensor-parallel degree of the prefill replicas, if not cluster.tensor_parallel (count)."
    )

    @model_validator(mode="after")
    def _switching_needs_one_kind(self) -> DisaggregationConfig:
        if self.controller is not None and (self.prefill_hardware is not None or self.prefill_tensor_parallel is not None):
            raise ValueError("controller: replicas switch roles, so the pools must be alike; drop prefill_hardware "
                             "and prefill_tensor_parallel, or the controller")
        return self


class PrefillOffloadConfig(BaseModel):
    """Prefill-as-a-service (PrfaaS): a remote prefill cluster joined by a cross-datacenter link.

    Prompts longer than ``threshold_tokens`` run on a remote prefill replica
    while its link has room (a backlog of at most ``max_link_wait_s``); their
    KV cache comes back over the link to the local replicas, which decode
    them.  Everything else runs locally, as without offload.
    """

    model_config = _FROZEN

    remote_prefill_replicas: int = Field(1, ge=1, description="Prefill replicas in the remote cluster (count), besides num_replicas local ones.")
    threshold_tokens: int = Field(4096, ge=1, description="Only prompts longer than this are offloaded (tokens).")
    max_link_wait_s: float = Field(
        0.05,
        ge=0,
        description="Offload only while the remote replica's link has at most this much queued ahead (s): the link has room.",
    )
    link: KvLinkConfig = Field(
        default_factory=lambda: KvLinkConfig(bandwidth_gbps=100.0, latency_s=0.005),
        description="Cross-datacenter link from each remote prefill replica back to the local cluster.",
    )
    remote_hardware: str | None = Field(
        None, description="GPU catalog id of the remote prefill cluster, if not cluster.hardware."
    )
    remote_tensor_parallel: int | None = Field(
        None, ge=1, description="Tensor-parallel degree of the remote prefill replicas, if not cluster.tensor_parallel (count)."
    )


class SemiPdControllerConfig(BaseModel):
    """semi-PD's SLO-aware controller: moves each replica's SM split towards the worker whose
    predicted latency is further over its target (slo.ttft_s for prefill, slo.tpot_s for decode)."""

    model_config = _FROZEN

    interval_s: float = Field(1.0, gt=0, description="Least time between two looks (s); the controller looks at arrivals.")
    step: float = Field(0.1, gt=0, lt=1, description="Share of the SMs moved per look (fraction).")
    min_share: float = Field(0.1, gt=0, lt=1, description="Least share the prefill worker keeps (fraction).")
    max_share: float = Field(0.9, gt=0, lt=1, description="Largest share the prefill worker takes (fraction).")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> SemiPdControllerConfig:
        if self.min_share > self.max_share:
            raise ValueError(f"min_share = {self.min_share} must not exceed max_share = {self.max_share}")
        return self


class SemiPdConfig(BaseModel):
    """semi-PD: each replica's GPUs run a prefill worker and a decode worker at once, each on a share
    of the streaming multiprocessors, over one shared KV cache (docs/cluster.md)."""

    model_config = _FROZEN

    prefill_share: float = Field(0.5, gt=0, lt=1, description="Share of the SMs the prefill worker starts with (fraction).")
    decode_saturation: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Share of the SMs at which memory-bound decode reaches full speed (fraction); less slows it proportionally.",
    )
    controller: SemiPdControllerConfig | None = Field(
        None, description="Move the split at run time by SLO pressure (null: it stays at prefill_share)."
    )


class KvCompressionConfig(BaseModel):
    """Non-uniform (per-head) KV-cache compression (Tangram): the cache keeps a share of the full KV,
    laid out in ragged pages (no overhead) or uniform pages (waste and step overheads)."""

    model_config = _FROZEN

    footprint_ratio: float = Field(0.25, gt=0, le=1, description="Mean share of the full KV cache the heads keep (fraction).")
    paging: Literal["ragged", "uniform"] = Field(
        "ragged",
        description="'ragged': budget-reserved ragged paging (Tangram); 'uniform': uniform pages under non-uniform budgets.",
    )
    uniform_waste: float = Field(
        0.3, ge=0, description="'uniform': unused share of every page, relative to the compressed footprint (fraction)."
    )
    uniform_prefill_overhead: float = Field(
        0.25, ge=0, description="'uniform': extra time of steps with prompt tokens, reclaiming pages (fraction; up to 0.25 reported)."
    )
    uniform_decode_slowdown: float = Field(
        1.7, ge=1, description="'uniform': pure-decode steps take this many times as long, heads out of balance (up to 1.7 reported)."
    )


class ExpertOffloadConfig(BaseModel):
    """MoE expert offloading: a cache of experts per layer in GPU memory, the rest in host memory
    (docs/memory.md)."""

    model_config = _FROZEN

    gpu_experts_per_layer: int = Field(ge=1, description="Routed experts each MoE layer keeps on the GPU (count; at least experts_per_token).")
    routing_consistency: float | None = Field(
        None, ge=0, le=1, description="The model's local routing consistency (0..1); null = 0.8, or 0.5 with shared experts."
    )
    miss: Literal["load", "cpu", "auto"] = Field(
        "load",
        description="A missing expert: 'load' it over PCIe (the step waits), run it on the 'cpu', or 'auto': the cheaper per step.",
    )
    pcie_gb_per_s: float = Field(25.0, gt=0, description="Host-to-GPU bandwidth for expert loads (GB/s).")
    host_gb_per_s: float = Field(200.0, gt=0, description="Host memory bandwidth for experts run on the CPU (GB/s).")
    cpu_tflops: float = Field(1.0, gt=0, description="CPU compute for experts run on the CPU (TFLOP/s).")


class ChunkCacheConfig(BaseModel):
    """A RAG chunk cache per replica (Cache-Craft): chunks' KV reused at any position of a prompt,
    but for a recomputed share (docs/memory.md)."""

    model_config = _FROZEN

    capacity_gb: float = Field(gt=0, description="Room for chunks' KV per replica (GB).")
    recompute_fraction: float = Field(
        0.15, ge=0, le=1, description="Share of a reused chunk's tokens recomputed to fix its attention to what precedes it."
    )
    read_gb_per_s: float | None = Field(
        None, gt=0, description="Bandwidth of loading chunks into GPU memory (GB/s); null: the cache is in GPU memory (no load)."
    )


class KvPinningConfig(BaseModel):
    """Pin an agent call's KV across the tool call that follows it (Continuum; docs/memory.md)."""

    model_config = _FROZEN

    policy: Literal["fixed", "predicted"] = Field(
        "predicted",
        description="'fixed': pin for ttl_s; 'predicted': scale x the program's mean tool gap so far, unless over max_ttl_s.",
    )
    ttl_s: float = Field(10.0, gt=0, description="'fixed': the time to live; 'predicted': the guess before any gap was seen (s).")
    scale: float = Field(1.5, gt=0, description="'predicted': time to live as a multiple of the predicted gap.")
    max_ttl_s: float = Field(30.0, gt=0, description="'predicted': do not pin when the predicted gap is longer than this (s).")
    min_turns: int = Field(1, ge=1, description="Pin a program's KV only from its min_turns-th finished call on (count).")


class LoraServingConfig(BaseModel):
    """Where a replica keeps the LoRA adapters requests ask for (S-LoRA; docs/memory.md)."""

    model_config = _FROZEN

    memory: Literal["unified", "partition"] = Field(
        "unified",
        description=(
            "'unified': adapters take blocks of the KV cache's pool (S-LoRA's unified paging); 'partition': a fixed "
            "partition_gb of GPU memory is reserved for them, apart from the KV cache."
        ),
    )
    partition_gb: float = Field(4.0, gt=0, description="'partition': GPU memory reserved for adapters per GPU (GB).")
    pcie_gb_per_s: float = Field(25.0, gt=0, description="Bandwidth of adapter loads from host memory (GB/s).")
    step_overhead: float = Field(
        0.05, ge=0, description="Extra share of every step's time for the batched heterogeneous LoRA kernels (fraction)."
    )


class PowerConfig(BaseModel):
    """GPU power by phase, an optional power cap, and so energy (docs/operations.md)."""

    model_config = _FROZEN

    idle_fraction: float = Field(0.2, gt=0, le=1, description="Power of an idle GPU, as a share of its TDP.")
    decode_fraction: float = Field(0.6, gt=0, le=1, description="Power in memory-bound decode steps, as a share of TDP.")
    prefill_fraction: float = Field(0.95, gt=0, le=1, description="Power in steps with prompt tokens (compute-bound), as a share of TDP.")
    cap_w: float | None = Field(None, gt=0, description="Power cap per GPU (W): phases that would draw more run at a lower clock; null: none.")
    decode_frequency_sensitivity: float = Field(
        0.3, ge=0, le=1, description="How much of a lower clock decode (memory-bound) steps feel: 0 none, 1 as much as prefill."
    )
    row: RowPowerConfig | None = Field(
        None, description="A row power budget, oversubscribed, with a capping controller (POLCA); null: none."
    )


class KvTierConfig(BaseModel):
    """A KV-cache tier below the GPU (per replica): prefix-cache entries the GPU evicts move here,
    and come back up on a hit, paying a load (docs/memory.md)."""

    model_config = _FROZEN

    name: str = Field(min_length=1, description="Tier name, e.g. 'cpu', 'ssd', 'remote' (shown in the summary).")
    capacity_gb: float = Field(gt=0, description="Room for KV caches per replica (GB, 1e9 bytes).")
    read_gb_per_s: float = Field(gt=0, description="Bandwidth of loads into GPU memory (GB/s), e.g. 25 for PCIe 4 x16.")
    latency_s: float = Field(0.0, ge=0, description="Fixed latency of a load (s).")
    io: Literal["bulk", "block"] = Field(
        "bulk",
        description=(
            "'block': CPU-driven reads of one KV block each, paying per_io_s per block (LMCache-like); "
            "'bulk': GPU-driven I/O of one object per prefix block, per_io_s each (Tutti)."
        ),
    )
    per_io_s: float = Field(0.0, ge=0, description="Cost of one I/O operation (s): submission, completion, small-read overhead.")
    overlap: bool = Field(
        False,
        description="Loads run alongside the step's compute (layer by layer, slack-aware) and stall it only by the excess; false: the step waits for them.",
    )
    shared: bool = Field(
        False,
        description=(
            "One store for all replicas (a remote KV store, e.g. Mooncake's): an entry any replica demotes can be "
            "loaded by any other; capacity_gb is then the whole store's. false: one per replica."
        ),
    )


class PoolConfig(BaseModel):
    """One pool of a heterogeneous cluster: identical replicas of one model on one GPU type.

    Fields left null take the ``cluster`` section's value, so a pool names
    only what sets it apart.  ``quality`` and ``price_usd_per_mtok`` are what
    model routers (``router.policy: route_balance``, ``quality_threshold``,
    ``cheapest_first``) weigh.
    """

    model_config = _FROZEN

    name: str = Field(min_length=1, description="Pool name, shown in the summary.")
    num_replicas: int = Field(1, ge=1, description="Replicas in this pool (count).")
    model: str | None = Field(None, description="Model catalog id; null = cluster.model.")
    hardware: str | None = Field(None, description="GPU catalog id; null = cluster.hardware.")
    tensor_parallel: int | None = Field(None, ge=1, description="Tensor-parallel degree (count); null = cluster.tensor_parallel.")
    pipeline_parallel: int | None = Field(None, ge=1, description="Pipeline-parallel degree (count); null = cluster.pipeline_parallel.")
    weight_dtype: WeightDtype | None = Field(None, description="Weight format; null = cluster.weight_dtype.")
    kv_cache_dtype: KvCacheDtype | None = Field(None, description="KV-cache format; null = cluster.kv_cache_dtype.")
    quality: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.0, 1.0), (1.0, 1.0)],
        description=(
            "Expected answer quality (0..1) of this pool's model against request difficulty (0..1), as "
            "[difficulty, quality] points joined by straight lines (flat beyond the ends), e.g. "
            "[[0, 0.95], [1, 0.3]] for a small model."
        ),
    )
    price_usd_per_mtok: float | None = Field(
        None,
        ge=0,
        description=(
            "What a million tokens (prompt + output) served by this pool cost, as a model router weighs it (USD); "
            "null = the GPU-hour price of a replica over its decode throughput at a batch of 64 (see docs/cluster.md)."
        ),
    )

    @model_validator(mode="after")
    def _quality_is_a_curve(self) -> PoolConfig:
        points = self.quality
        if not points:
            raise ValueError("quality: needs at least one [difficulty, quality] point")
        for d, q in points:
            if not (0.0 <= d <= 1.0 and 0.0 <= q <= 1.0):
                raise ValueError(f"quality point [{d}, {q}]: difficulty and quality must both lie in [0, 1]")
        if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ValueError(f"quality = {[list(p) for p in points]}: difficulties must increase from point to point")
        return self


class ClusterConfig(BaseModel):
    """The deployment: identical replicas of one model on one GPU type."""

    model_config = _FROZEN

    num_replicas: int = Field(1, ge=1, description="Number of model replicas behind the router (count).")
    engine: Literal["vllm", "pytorch"] = Field(
        "vllm",
        description=(
            "Serving engine whose behaviour and costs are simulated (docs/fidelity.md): 'vllm' (vLLM's V1 "
            "engine: piecewise CUDA graphs, asynchronous scheduling, kernel-grounded step costs, `vllm serve`'s "
            "defaults; on a hardware entry with device: cpu, vLLM's CPU backend: eager steps, synchronous "
            "scheduling, its CPU defaults, step costs from a calibration, docs/live.md) or 'pytorch' (the plain "
            "PyTorch harness of shared/calibration: CUDA graphs for pure decode only, eager launches otherwise)."
        ),
    )
    engine_version: str | None = Field(
        None,
        pattern=r"^v?\d+(\.\d+){0,2}([.+-]?[0-9A-Za-z.]*)?$",
        description=(
            "Engine version where versions differ in results (vllm: asynchronous scheduling from 0.14 on), "
            "e.g. '0.15.1'; null = vllm 0.15."
        ),
    )
    frontend_latency_s: float | None = Field(
        None,
        ge=0,
        description=(
            "The serving front end's fixed time per request, added to the TTFT and end-to-end latency a client "
            "sees (API server: parsing, tokenising, IPC, detokenising, streaming) (s); null = the engine's "
            "default (vllm: fitted on end-to-end runs, docs/fidelity.md; pytorch: 0)."
        ),
    )
    model: str = Field("llama-3-8b", description="Model catalog id (see `servesim catalog`).")
    hardware: str = Field("h100", description="GPU catalog id (see `servesim catalog`).")
    tensor_parallel: int = Field(1, ge=1, description="Tensor-parallel degree: GPUs sharing each layer (count).")
    pipeline_parallel: int = Field(1, ge=1, description="Pipeline-parallel degree: stages of layers (count).")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of each GPU's memory the engine may use (weights + activations + KV)."
    )
    activation_reserve_gb: float | None = Field(
        None, ge=0, description="Memory reserved per GPU for activations and runtime buffers (GB, 1e9 bytes); null = the model's rule."
    )
    block_size: int = Field(16, ge=1, description="Tokens per paged KV-cache block (tokens).")
    cuda_graphs: bool = Field(True, description="Replay pure-decode iterations as CUDA graphs (else eager launches).")
    prefill_cuda_graph_tokens: int = Field(
        0,
        ge=0,
        description=(
            "Pure-prefill iterations of at most this many tokens replay captured CUDA graphs too, without "
            "eager launches (LAPS's short-prefill buckets, e.g. 256 on a prefill replica; needs cuda_graphs). "
            "0: prefill iterations run eager (tokens)."
        ),
    )
    expert_parallel: bool = Field(
        False,
        description="MoE only: place experts whole on the tensor-parallel GPUs (EP degree = tensor_parallel) instead of splitting each expert.",
    )
    weight_dtype: WeightDtype = Field(
        "bf16",
        description="Weight format: bf16/fp16 (2 bytes), fp8 or int8 (W8A8, 1 byte), int4 (W4A16 weight-only, 0.5 byte).",
    )
    kv_cache_dtype: KvCacheDtype = Field("bf16", description="KV-cache format: bf16/fp16 (2 bytes per element) or fp8 (1 byte).")
    max_model_len: int | None = Field(
        None, ge=1, description="Longest prompt+output a request may have (tokens); null = the model's context length."
    )
    disaggregation: DisaggregationConfig | None = Field(
        None,
        description=(
            "Split the replicas into prefill and decode pools (null: every replica does both). "
            "num_replicas must equal prefill_replicas + decode_replicas."
        ),
    )

    prefix_caching: bool | None = Field(
        None,
        description=(
            "null = the engine's default (vllm: on, where the scenario's other features allow it: not with "
            "lora, chunk_cache or semi_pd; pytorch: off).  "
            "Share KV blocks between requests by the trace's prefix-block hashes (e.g. Mooncake hash_ids): a "
            "computed prompt's blocks stay cached (LRU, reference counted, in the KV cache's free room), and a "
            "prompt's cached leading blocks skip prefill."
        ),
    )
    expert_offload: ExpertOffloadConfig | None = Field(
        None, description="Keep only some experts of an MoE model on the GPU; null: all of them."
    )
    kv_compression: KvCompressionConfig | None = Field(
        None, description="Compress the KV cache head by head (Tangram); null: full KV cache."
    )
    chunk_cache: ChunkCacheConfig | None = Field(
        None, description="Cache RAG chunks' KV for reuse at any position (Cache-Craft; needs workload.rag); null: none."
    )
    kv_pinning: KvPinningConfig | None = Field(
        None, description="Pin agent calls' KV across tool calls (Continuum; needs prefix_caching and an agent workload); null: none."
    )
    power: PowerConfig = Field(default_factory=PowerConfig, description="GPU power by phase and an optional power cap.")
    lora: LoraServingConfig | None = Field(
        None, description="Serve requests' LoRA adapters (needs workload.lora); null: adapters are not modelled."
    )
    kv_tiers: list[KvTierConfig] = Field(
        default_factory=list,
        description=(
            "KV-cache tiers below the GPU, top first (e.g. CPU DRAM, then SSD), for prefix-cache entries the GPU "
            "evicts; needs prefix_caching."
        ),
    )
    prefix_cache_unlimited: bool = Field(
        False,
        description=(
            "Keep every prefix block ever computed: entries the GPU evicts stay reachable at no load cost, as "
            "if GPU memory were unlimited (an upper bound for hit rates); needs prefix_caching."
        ),
    )
    prefill_offload: PrefillOffloadConfig | None = Field(
        None,
        description=(
            "Offload long prompts to a remote prefill cluster (PrfaaS); num_replicas local replicas serve the rest "
            "and decode everything. null: no remote cluster."
        ),
    )

    pools: list[PoolConfig] | None = Field(
        None,
        description=(
            "A heterogeneous cluster: several pools, each its own model, GPU type, parallelism and count "
            "(fields a pool leaves null come from this section). num_replicas must equal the pools' sum. "
            "null: one pool of num_replicas identical replicas."
        ),
    )

    semi_pd: SemiPdConfig | None = Field(
        None,
        description=(
            "Split each replica's compute between a prefill and a decode worker sharing its KV cache (semi-PD). "
            "null: one engine per replica."
        ),
    )

    @model_validator(mode="after")
    def _pools_add_up(self) -> ClusterConfig:
        if self.prefix_caching is None:
            # The engine's default, fixed at validation so that the config a run writes says it.
            default = self.engine == "vllm" and self.lora is None and self.chunk_cache is None and self.semi_pd is None
            object.__setattr__(self, "prefix_caching", default)
        if self.lora is not None and (self.prefix_caching or self.disaggregation is not None or self.semi_pd is not None
                                      or self.prefill_offload is not None or self.pools is not None):
            raise ValueError("lora cannot be combined with prefix_caching, disaggregation, semi_pd, prefill_offload "
                             "or pools yet; turn those off")
        if self.chunk_cache is not None and self.prefix_caching:
            raise ValueError("chunk_cache and prefix_caching cannot be combined yet; compare them one at a time")
        if self.kv_pinning is not None and not self.prefix_caching:
            raise ValueError("kv_pinning holds prefix-cache entries: set prefix_caching: true")
        if (self.kv_tiers or self.prefix_cache_unlimited) and not self.prefix_caching:
            raise ValueError("kv_tiers and prefix_cache_unlimited hold prefix-cache entries: set prefix_caching: true")
        names = [t.name for t in self.kv_tiers]
        if len(set(names)) != len(names) or "gpu" in names:
            raise ValueError(f"kv_tiers: names must be unique and not 'gpu', got {names}")
        if self.semi_pd is not None:
            others = [name for name in ("disaggregation", "prefill_offload", "pools") if getattr(self, name) is not None]
            if self.prefix_caching:
                others.append("prefix_caching")
            if others:
                raise ValueError(f"semi_pd cannot be combined with {', '.join(others)} yet; turn those off")
        if self.disaggregation is not None and self.prefill_offload is not None:
            raise ValueError("disaggregation and prefill_offload cannot be combined yet; set one of them to null")
        if self.pools is not None:
            if not self.pools:
                raise ValueError("pools: an empty list; give at least one pool or null")
            if self.disaggregation is not None or self.prefill_offload is not None:
                raise ValueError("pools cannot be combined with disaggregation or prefill_offload yet; set those to null")
            names = [p.name for p in self.pools]
            if len(set(names)) != len(names):
                raise ValueError(f"pools: names must be unique, got {names}")
            total = sum(p.num_replicas for p in self.pools)
            if total != self.num_replicas:
                raise ValueError(f"num_replicas = {self.num_replicas} but the pools have {total} replicas; set num_replicas to {total}")
        d = self.disaggregation
        if d is not None and d.prefill_replicas + d.decode_replicas != self.num_replicas:
            raise ValueError(
                f"num_replicas = {self.num_replicas} but disaggregation has {d.prefill_replicas} prefill + "
                f"{d.decode_replicas} decode replicas; set num_replicas to {d.prefill_replicas + d.decode_replicas}"
            )
        return self
