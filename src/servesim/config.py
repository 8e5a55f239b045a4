"""The scenario: one validated, frozen description of a run.

A scenario YAML file has one section per component; each section is the
config model owned by that component's package:

=============  ==============================================  =====================
section        meaning                                         model
=============  ==============================================  =====================
``workload``   requests: a trace or a synthetic generator      ``WorkloadConfig``
``cluster``    replicas, GPU, parallelism, memory settings     ``ClusterConfig``
``scheduler``  batching limits and queue policy per replica    ``SchedulerConfig``
``router``     global routing policy                           ``RouterConfig``
``slo``        latency targets for attainment and goodput      ``SloTargets``
``perf``       efficiencies of the step-time model             ``StepTimeParams``
``engine``     simulator knobs that do not change results      ``EngineConfig``
``catalog``    extra or overriding model / GPU entries         ``CatalogConfig``
``semantic_    a semantic cache in front of the fleet          ``SemanticCacheConfig``
cache``
=============  ==============================================  =====================

plus ``name``, ``seed``, ``horizon_s`` and ``calibration`` (a calibration file
whose fitted values become the ``perf`` defaults).  Every field documents its unit in
the JSON schema (``servesim config schema``).  Errors are ``ConfigError``
with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servesim import yaml_text
from servesim.cluster.power_budget_config import RowPowerConfig
from servesim.cluster.router_config import MODEL_ROUTERS, RouterConfig
from servesim.errors import ConfigError
from servesim.fleet_config import AutoscalingConfig, FailuresConfig
from servesim.metrics.config import SloTargets
from servesim.perf.dtypes import KvCacheDtype, WeightDtype
from servesim.perf.steptime import StepTimeParams
from servesim.scheduler.config import SchedulerConfig
from servesim.semantic.config import SemanticCacheConfig
from servesim.workload.config import TraceWorkloadConfig, WorkloadConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True)


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

    prefix_caching: bool = Field(
        False,
        description=(
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


class EngineConfig(BaseModel):
    """Simulator knobs; none of them changes per-request results."""

    model_config = _FROZEN

    fast_path: bool = Field(
        True,
        description=(
            "Fast path: decoding sequences advance as one lockstep group and runs of identical decode iterations "
            "are priced in one event; false = the plain iteration-by-iteration reference (same per-request results, slower)."
        ),
    )
    timeseries_interval_s: float = Field(
        1.0, gt=0, description="Sampling period of the queue/batch/KV time series (simulated seconds)."
    )


class CatalogConfig(BaseModel):
    """Catalog entries added to (or overriding) the built-in models and GPUs."""

    model_config = _FROZEN

    files: list[str] = Field(
        default_factory=list, description="YAML files with `models:` and/or `hardware:` maps, same schema as the built-ins."
    )
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Inline model entries by id.")
    hardware: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Inline GPU entries by id.")


class ScenarioConfig(BaseModel):
    """One run of servesim."""

    model_config = _FROZEN

    name: str = Field("default", description="Scenario name, shown in reports.")
    seed: int = Field(0, ge=0, description="Seed of every random stream of the run.")
    horizon_s: float | None = Field(
        None, gt=0, description="Stop the simulated clock here (seconds); null = run until every request is done."
    )
    workload: WorkloadConfig = Field(
        default_factory=lambda: TraceWorkloadConfig(kind="trace", path="builtin:azure-2023-conv"),
        description="The requests to replay.",
    )
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="The deployment.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Per-replica batch scheduler.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Global router.")
    slo: SloTargets = Field(default_factory=SloTargets, description="Latency targets (SLOs).")
    perf: StepTimeParams = Field(default_factory=StepTimeParams, description="Step-time model efficiencies.")
    calibration: str | None = Field(
        None,
        description=(
            "Calibration YAML written by `servesim calibrate` (path; relative to the scenario file): its fitted "
            "values replace the `perf` defaults, fields set under `perf` still win. Must be fitted for cluster.hardware."
        ),
    )
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Replicas added and removed by a policy, with cold starts and draining; null: a fixed fleet."
    )
    failures: FailuresConfig | None = Field(
        None, description="GPU and node failures with detection and recovery, stragglers, interference, link degradation; null: none."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Simulator knobs.")
    semantic_cache: SemanticCacheConfig | None = Field(
        None, description="A category-aware semantic cache in front of the fleet (docs/operations.md); null: none."
    )
    catalog: CatalogConfig = Field(default_factory=CatalogConfig, description="Extra catalog entries.")

    @model_validator(mode="after")
    def _router_needs(self) -> ScenarioConfig:
        semi = self.cluster.semi_pd
        if semi is not None and semi.controller is not None and (self.slo.ttft_s is None or self.slo.tpot_s is None):
            raise ValueError("cluster.semi_pd.controller steers by the SLOs: set slo.ttft_s and slo.tpot_s")
        if self.router.policy in MODEL_ROUTERS:
            if self.cluster.pools is None:
                raise ValueError(f"router.policy = {self.router.policy!r} routes between models: it needs cluster.pools")
            if self.workload.difficulty is None:
                raise ValueError(f"router.policy = {self.router.policy!r} weighs each request's difficulty: set "
                                 "workload.difficulty (e.g. {a: 1, b: 1} for uniform)")
        self._fleet_needs()
        self._semantic_cache_needs()
        if self.router.policy == "adapter_affinity" and self.cluster.lora is None:
            raise ValueError("router.policy = 'adapter_affinity' needs cluster.lora (replicas holding LoRA adapters)")
        if self.router.policy == "prefix_aware" and not self.cluster.prefix_caching:
            raise ValueError("router.policy = 'prefix_aware' needs cluster.prefix_caching: true (replicas without a "
                             "prefix cache give it nothing to match)")
        return self

    def _fleet_needs(self) -> None:
        """Autoscaling and replica failures run on a colocated fleet of one pool."""
        scaling = self.autoscaling
        f = self.failures
        fails = f is not None and (f.gpu_failures_per_hour > 0 or f.node_failures_per_hour > 0 or bool(f.scripted))
        if scaling is None and not fails:
            return
        c = self.cluster
        if c.power.row is not None:
            raise ValueError("cluster.power.row (a row power budget) does not combine with autoscaling or replica "
                             "failures yet: its controller tracks a fixed set of replicas")
        for name in ("disaggregation", "prefill_offload", "semi_pd", "pools"):
            if getattr(c, name) is not None:
                what = "autoscaling" if scaling is not None else "failures (GPU and node failure rates above 0)"
                raise ValueError(f"{what} needs a colocated cluster of one pool; cluster.{name} is set "
                                 "(failures with both rates 0 keep stragglers, interference and link degradation)")
        if scaling is not None and not scaling.min_replicas <= c.num_replicas <= scaling.max_replicas:
            raise ValueError(f"cluster.num_replicas = {c.num_replicas} is the starting fleet: it must lie within "
                             f"autoscaling.min_replicas = {scaling.min_replicas} and max_replicas = {scaling.max_replicas}")
        if scaling is not None and scaling.elastic is not None:
            steps = scaling.elastic.gpu_steps
            if c.tensor_parallel != steps[0]:
                raise ValueError(f"autoscaling.elastic.gpu_steps starts at {steps[0]} GPUs: set cluster.tensor_parallel "
                                 f"= {steps[0]} (now {c.tensor_parallel})")

    def _semantic_cache_needs(self) -> None:
        cache = self.semantic_cache
        if self.router.policy == "ic_cache" and (cache is None or cache.ic_cache is None):
            raise ValueError("router.policy = 'ic_cache' retrieves examples from the semantic cache: set semantic_cache.ic_cache")
        if cache is None:
            return
        if self.workload.kind == "agent":
            raise ValueError("semantic_cache: agent workloads (closed-loop programs) are not supported in front of a cache")
        pool = cache.ic_cache.pool if cache.ic_cache is not None else None
        names = [p.name for p in self.cluster.pools or []]
        if pool is not None and pool not in names:
            raise ValueError(f"semantic_cache.ic_cache.pool = {pool!r} names no pool (cluster.pools: {', '.join(names) or 'none'})")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (every default filled in)."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ScenarioConfig:
    """Read a scenario file (None = the default scenario) and apply ``key.path=value`` overrides.

    Relative file paths inside the scenario (trace paths, catalog files) are
    resolved against the scenario file's folder.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        _resolve_paths(raw, Path(path).resolve().parent)
    overrides = list(overrides)
    sets_kind = any(item.replace(" ", "").startswith(("workload.kind=", "workload=")) for item in overrides)
    if overrides and not sets_kind and not isinstance(raw.get("workload"), dict):
        # Overrides of workload fields refine the default workload.
        raw["workload"] = ScenarioConfig.model_fields["workload"].default_factory().model_dump(mode="json")
    for item in overrides:
        apply_override(raw, item)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> ScenarioConfig:
    """Validate plain data into a ``ScenarioConfig``; ``ConfigError`` on the first problem."""
    try:
        return ScenarioConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. cluster.num_replicas=4")
    try:
        value = yaml_text.safe_load(text)
    except yaml.YAMLError:
        value = text
    set_dotted(raw, key.strip(), value, f"override {item!r}")


def set_dotted(raw: dict[str, Any], path: str, value: Any, label: str) -> None:
    """Set ``a.b.c`` of plain config data in place; missing or null sections become mappings.
    ``ConfigError`` (prefixed with ``label``) when a step of the path is a value, not a section."""
    parts = path.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{label}: {'.'.join(parts[:depth + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(err: ValidationError) -> str:
    """One line for the first error: field path, offending value and what is allowed."""
    first = err.errors()[0]
    loc = _field_path(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return f"config error: {loc}: unknown field{_allowed_fields(first.get('loc', ()))}"
    if kind == "missing":
        return f"config error: {loc}: required field is missing"
    if kind == "union_tag_not_found":
        return f"config error: {loc}.kind: required field is missing (allowed: {_workload_kinds()})"
    if kind == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        return f"config error: {loc}.kind = {tag!r}: unknown kind (allowed: {_workload_kinds()})"
    value = first.get("input")
    msg = first.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    return f"config error: {loc}{shown}: {msg}"


def _workload_models() -> dict[str, type[BaseModel]]:
    from servesim.workload import config as wc

    return {"trace": wc.TraceWorkloadConfig, "synthetic": wc.SyntheticWorkloadConfig, "agent": wc.AgentWorkloadConfig}


def _workload_kinds() -> str:
    return ", ".join(_workload_models())


def _field_path(loc: tuple) -> str:
    # The workload union adds its tag ('trace', 'synthetic') right after
    # 'workload'; drop it there only ('trace' is also a LengthConfig field).
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "workload" and p in _workload_models())]
    return ".".join(parts) or "<root>"


def _allowed_fields(loc: tuple) -> str:
    model: Any = ScenarioConfig
    for i, part in enumerate(loc[:-1]):
        if i == 1 and loc[0] == "workload" and part in _workload_models():
            model = _workload_models()[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        # None for a non-model field (e.g. the workload union, resolved by its tag next).
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    names = list(getattr(model, "model_fields", {}))
    own = set(getattr(model, "__annotations__", {}))
    names = [n for n in names if n in own] + [n for n in names if n not in own]  # a section's own fields first
    return f" (allowed: {', '.join(names)})" if names else ""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"scenario file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read scenario file {path}: {err.strerror}") from None
    try:
        data = yaml_text.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario must be a mapping of sections, got {type(data).__name__}")
    return data


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("builtin:") and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists():
                return str(candidate)
        return value

    workload = raw.get("workload")
    if isinstance(workload, dict):
        if "path" in workload:
            workload["path"] = resolve(workload["path"])
        for key in ("prompt_tokens", "output_tokens"):
            lengths = workload.get(key)
            if isinstance(lengths, dict) and "trace" in lengths:
                lengths["trace"] = resolve(lengths["trace"])
    if isinstance(raw.get("calibration"), str):
        raw["calibration"] = resolve(raw["calibration"])
    cache = raw.get("semantic_cache")
    similarity = cache.get("similarity") if isinstance(cache, dict) else None
    if isinstance(similarity, dict) and isinstance(similarity.get("fit_from"), str):
        similarity["fit_from"] = resolve(similarity["fit_from"])
    catalog = raw.get("catalog")
    if isinstance(catalog, dict) and isinstance(catalog.get("files"), list):
        catalog["files"] = [resolve(f) for f in catalog["files"]]
