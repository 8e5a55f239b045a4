"""Assembly of one run: the replicas, router and topology a ``ScenarioConfig`` describes.

``build_simulation`` wires a ``Simulation`` from the resolved pools
(``servesim.deployment``) and the workload: each pool's replica setup and
step model, the router (a model router for heterogeneous pools), and the
prefill/decode topology (disaggregation, prefill offload or semi-PD).
"""

from __future__ import annotations

import math
from typing import Any

from typing import TYPE_CHECKING

from servesim.cluster.disaggregation import PdSetup
from servesim.cluster.router_config import MODEL_ROUTERS
from servesim.cluster.routers import make_router
from servesim.cluster.simulation import ReplicaSetup, Simulation, fit_limit
from servesim.config import ClusterConfig, PdControllerConfig, PoolConfig, ScenarioConfig
from servesim.core.rng import RandomStreams
from servesim.deployment import Deployment, gpus_per_replica, total_replicas
from servesim.errors import ConfigError, DeploymentError
from servesim.perf.batch_shape import BatchShape
from servesim.workload.request import Workload

if TYPE_CHECKING:
    from servesim.cluster.model_routing import PoolProfile
    from servesim.cluster.semi_pd import SemiPdSetup
    from servesim.kvcache.chunk_cache import ChunkCache
    from servesim.kvcache.tiers import KvTier

# The modules of optional features (model routing, semi-PD, pinning, KV tiers, chunk caches,
# LoRA adapters) are imported where a run uses them: a plain run's start-up does not pay for them.


def build_simulation(
    config: ScenarioConfig, pools: list[tuple[PoolConfig, Deployment]], workload: Workload, step_model: Any, bar: Any,
    fleet_policy: Any = None,
) -> Simulation:
    """Wire the configured replicas, router and engine knobs around ``workload``.

    ``pools`` are the resolved pools in replica order (``pool_deployments``);
    ``step_model`` (None: each pool's own) replaces every pool's step model;
    ``bar`` receives progress (or None); ``fleet_policy`` replaces the configured
    autoscaling policy (an RL agent trained over several runs).
    """
    from servesim.fleet_assembly import attach_operations, needs_reference_path

    cluster = config.cluster
    prefix_tokens = workload.prefix_block_size if cluster.prefix_caching and workload.prefix_block_ids else 0
    if cluster.chunk_cache is not None and not workload.chunk_tokens:
        raise ConfigError("cluster.chunk_cache reuses RAG chunks: the workload has none (set workload.rag)")
    chunk_tokens = workload.chunk_tokens or 0
    if cluster.lora is not None and workload.adapter_ids is None:
        raise ConfigError("cluster.lora serves LoRA adapters: the workload asks for none (set workload.lora)")
    layout = [
        (_replica_setup(config, d, prefix_tokens or 0, chunk_tokens, workload.adapter_ranks), step_model or d.step_model,
         pool.num_replicas)
        for pool, d in pools
    ]
    setup = layout[0][0]
    semi = _semi_pd_setup(config, layout[0][1], workload) if cluster.semi_pd is not None else None
    if semi is not None:
        from servesim.cluster.semi_pd import SmShareStepModel

        # Replica i's prefill worker is simulated replica i, its decode worker n + i.
        layout = [(setup, SmShareStepModel(layout[0][1], split, True), 1) for split in semi.splits] + [
            (setup, SmShareStepModel(layout[0][1], split, False), 1) for split in semi.splits
        ]
    if config.router.policy in MODEL_ROUTERS:
        if workload.difficulty is None:
            raise ConfigError(f"router.policy = {config.router.policy!r} needs a difficulty per request; the "
                              "workload has none (set workload.difficulty)")
        from servesim.cluster.model_routing import make_model_router

        profiles = _pool_profiles(config, pools, layout, workload)
        mean_output = float(workload.output_tokens.mean()) if len(workload) else 1.0
        if config.router.policy == "ic_cache":
            from servesim.semantic.ic_cache import IcCacheRouter

            front = _semantic_front(config, workload)
            router = IcCacheRouter(profiles, workload.difficulty, front, config.semantic_cache.ic_cache, config.router.min_quality)
        else:
            router = make_model_router(config.router, profiles, workload.difficulty, mean_output)
    else:
        profiles = _pool_profiles(config, pools, layout, workload) if cluster.pools is not None else []
        router = make_router(config.router, RandomStreams(config.seed).stream("router"))
    sim = Simulation(
        workload,
        setup,
        simulated_replicas(cluster),
        router,
        layout[0][1],
        horizon_s=config.horizon_s,
        # Expert offloading counts its misses per priced step: price only the steps that run.
        # Replica failures and elastic resizes change a replica mid-stretch: they plan step by
        # step too.  A semantic cache stores responses as they finish, which a decode stretch
        # would book late.
        fast_path=(config.engine.fast_path and cluster.expert_offload is None and not needs_reference_path(config)
                   and config.semantic_cache is None),
        timeseries_interval_s=config.engine.timeseries_interval_s,
        progress=bar,
        view_delay_s=config.router.view_delay_s,
        hold_short_s=config.router.laps_batch_window_s if config.router.policy == "laps" else 0.0,
        short_prompt_tokens=config.router.laps_threshold_tokens,
        pd=_pd_setup(config, pools) if semi is None else PdSetup(cluster.num_replicas, 0.0, 1.0, 0.0, paired=True),
        pools=layout if len(layout) > 1 or semi is not None else None,
        semi_pd=semi,
    )
    sim.frontend_latency_s = pools[0][1].frontend_latency_s
    sim.pool_profiles = profiles
    pin = cluster.kv_pinning
    if pin is not None:
        from servesim.cluster.pinning import KvPinning

        sim.pinning = KvPinning(pin.policy, pin.ttl_s, pin.scale, pin.max_ttl_s, pin.min_turns)
    sim.semi_pd_splits = list(semi.splits) if semi is not None else []
    if config.autoscaling is not None or config.failures is not None:
        attach_operations(config, sim, pools, [model for _, model, count in layout for _ in range(count)], fleet_policy)
    if config.semantic_cache is not None:
        (front if config.router.policy == "ic_cache" else _semantic_front(config, workload)).attach(sim)
    return sim


def _semantic_front(config: ScenarioConfig, workload: Workload):
    """The semantic cache in front of the fleet (``servesim.semantic.front``)."""
    from servesim.semantic.front import SemanticFront

    cache = config.semantic_cache
    if cache.similarity.fit_from is not None:
        from servesim.semantic.embeddings import fitted_similarity

        cache = cache.model_copy(update={"similarity": fitted_similarity(cache.similarity.fit_from)})
    return SemanticFront(cache, len(workload), RandomStreams(config.seed))


def _replica_setup(
    config: ScenarioConfig, deployment: Deployment, prefix_tokens: int, chunk_tokens: int = 0, adapter_ranks=None
) -> ReplicaSetup:
    """What each replica of a deployment is built from (``prefix_tokens``: the workload's prefix
    block size when prefix caching is on, else 0; ``chunk_tokens``: its RAG chunk size, else 0)."""
    cluster = config.cluster
    blocks, block_size = deployment.memory.num_kv_blocks, cluster.block_size
    if prefix_tokens % block_size:
        raise ConfigError(f"cluster.block_size = {block_size} must divide the workload's prefix block size "
                          f"({prefix_tokens} tokens) for prefix caching; pick a divisor, e.g. 16")
    bytes_per_token = deployment.memory.kv_bytes_per_token_per_gpu * deployment.memory.num_gpus

    shared: dict[str, KvTier] = {}  # tiers every replica of this deployment reaches, built once

    def tier(t) -> KvTier:
        from servesim.kvcache.tiers import KvTier

        if t.shared and t.name in shared:
            return shared[t.name]
        made = KvTier(t.name, t.capacity_gb * 1e9, t.read_gb_per_s * 1e9, t.latency_s, bytes_per_token,
                      per_io_s=t.per_io_s, bulk=t.io == "bulk", overlap=t.overlap)
        if t.shared:
            shared[t.name] = made
        return made

    def make_kv_tiers() -> list[KvTier]:
        tiers = [tier(t) for t in cluster.kv_tiers]
        if cluster.prefix_cache_unlimited:
            from servesim.kvcache.tiers import KvTier

            tiers.append(KvTier("unlimited", math.inf, math.inf, 0.0, bytes_per_token))
        return tiers

    chunks = cluster.chunk_cache

    def make_chunk_cache() -> ChunkCache:
        from servesim.kvcache.chunk_cache import ChunkCache

        bandwidth = math.inf if chunks.read_gb_per_s is None else chunks.read_gb_per_s * 1e9
        return ChunkCache(chunks.capacity_gb * 1e9, bytes_per_token, chunk_tokens, chunks.recompute_fraction, bandwidth)

    lora = cluster.lora
    make_adapters = None
    if lora is not None:
        from servesim.kvcache.adapters import PartitionedAdapters, UnifiedAdapters, adapter_bytes

        ranks = adapter_ranks.tolist()
        sizes = [adapter_bytes(deployment.model, r) for r in ranks]  # whole adapters, all GPUs together
        pcie = lora.pcie_gb_per_s * 1e9
        if lora.memory == "unified":
            make_adapters = lambda kv: UnifiedAdapters(kv, sizes, pcie)  # noqa: E731
        else:
            capacity = lora.partition_gb * 1e9 * deployment.memory.num_gpus
            make_adapters = lambda kv: PartitionedAdapters(capacity, sizes, pcie)  # noqa: E731

    return ReplicaSetup(
        num_kv_blocks=blocks,
        block_size=block_size,
        max_model_len=deployment.max_model_len,
        scheduler=config.scheduler,
        async_scheduling=deployment.async_scheduling,
        prefix_block_tokens=prefix_tokens,
        kv_bytes_per_token=bytes_per_token,
        make_kv_tiers=make_kv_tiers if prefix_tokens else None,
        make_chunk_cache=make_chunk_cache if chunks is not None and chunk_tokens else None,
        make_adapters=make_adapters,
        entry_cache=lora is not None and lora.memory == "unified",
    )


def _semi_pd_setup(config: ScenarioConfig, step_model: Any, workload: Workload) -> SemiPdSetup:
    """Each replica's SM split, and what the controller predicts TTFT and TPOT from."""
    from servesim.cluster.semi_pd import SemiPdSetup, SmSplit

    semi, sched = config.cluster.semi_pd, config.scheduler
    splits = tuple(SmSplit(semi.prefill_share, semi.decode_saturation) for _ in range(config.cluster.num_replicas))
    c = semi.controller
    if c is None:
        return SemiPdSetup(splits)
    mean_prompt = float(workload.prompt_tokens.mean()) if len(workload) else 1.0
    mean_output = float(workload.output_tokens.mean()) if len(workload) else 1.0
    context = max(1, int(round(mean_prompt + mean_output / 2)))  # a decoding request's mean context
    chunk = min(sched.max_num_batched_tokens, 2048)
    return SemiPdSetup(
        splits,
        interval_s=c.interval_s,
        step=c.step,
        min_share=c.min_share,
        max_share=c.max_share,
        ttft_s=config.slo.ttft_s,
        tpot_s=config.slo.tpot_s,
        prefill_s_per_token=step_model.time_s(BatchShape.build(prefill_chunks=[(0, chunk)])) / chunk,
        decode_step_s=tuple(step_model.decode_time_s(b, b * context) for b in range(1, sched.max_num_seqs + 1)),
        mean_prompt_tokens=mean_prompt,
    )


def _pool_profiles(config: ScenarioConfig, pools: list, layout: list, workload: Workload) -> list[PoolProfile]:
    """What model routers know of each pool: quality, price and step times (see PoolProfile)."""
    from servesim.cluster.model_routing import PoolProfile

    sched = config.scheduler
    mean_prompt = float(workload.prompt_tokens.mean()) if len(workload) else 1.0
    expected_output = config.router.expected_output_tokens or (float(workload.output_tokens.mean()) if len(workload) else 1.0)
    context = max(1, int(round(mean_prompt + expected_output / 2)))  # a decoding request's mean context
    profiles, first = [], 0
    for i, ((pool, deployment), (setup, step_model, count)) in enumerate(zip(pools, layout)):
        decode = tuple(step_model.decode_time_s(b, b * context) for b in range(1, sched.max_num_seqs + 1))
        chunk = min(sched.max_num_batched_tokens, 2048)
        prefill = step_model.time_s(BatchShape.build(prefill_chunks=[(0, chunk)])) / chunk
        price = pool.price_usd_per_mtok
        if price is None:
            gpu_price = deployment.hardware.price_usd_per_gpu_hr
            if gpu_price is None:
                raise ConfigError(f"cluster.pools[{i}].price_usd_per_mtok: required, since GPU {deployment.hardware.name!r} "
                                  "has no price_usd_per_gpu_hr in the catalog")
            # A replica-hour's price over the tokens it decodes in an hour at a batch of 64.
            batch = min(64, sched.max_num_seqs)
            tokens_per_s = batch / decode[batch - 1]
            price = gpu_price * gpus_per_replica(pool) / 3600.0 / tokens_per_s * 1e6
        profiles.append(PoolProfile(pool.name, first, count, tuple(map(tuple, pool.quality)), price, prefill, decode,
                                    fit_limit(setup)))
        first += count
    return profiles


def _pd_setup(config: ScenarioConfig, pools: list[tuple[PoolConfig, Deployment]]) -> PdSetup | None:
    """The prefill/decode split of a disaggregated cluster or of a prefill offload, or None."""
    cluster = config.cluster
    d, o = cluster.disaggregation, cluster.prefill_offload  # at most one is set (ClusterConfig checks)
    if d is None and o is None:
        return None
    link = d.link if d is not None else o.link
    for pool, deployment in pools:
        holds = deployment.memory.kv_capacity_tokens
        if holds < deployment.max_model_len:
            # A prompt, or a request handed to the decode side, could find no replica able to hold its KV cache.
            section = "cluster.disaggregation" if d is not None else "cluster.prefill_offload"
            role = "a decode replica's" if pool is pools[-1][0] else "a prefill replica's"
            raise DeploymentError(
                f"{section}: {role} KV cache holds {holds} tokens, less than one request of "
                f"max_model_len = {deployment.max_model_len} tokens; set cluster.max_model_len to at most {holds}, "
                "or give replicas more memory (more GPUs, a larger GPU, fp8 KV cache)"
            )
    sender, deployment = pools[0]  # the prefill side sends the KV caches
    return PdSetup(
        num_prefill=d.prefill_replicas if d is not None else o.remote_prefill_replicas,
        kv_bytes_per_token=deployment.memory.kv_bytes_per_token_per_gpu * gpus_per_replica(sender),
        link_bytes_per_s=link.bandwidth_gbps * 1e9 / 8,
        link_latency_s=link.latency_s,
        stream_layers=deployment.model.num_layers if link.layerwise else 0,
        forward_queue_len=(d.forward_queue_len or 0) if d is not None else 0,
        offload_threshold_tokens=o.threshold_tokens if o is not None else 0,
        max_link_wait_s=o.max_link_wait_s if o is not None else 0.0,
        **_controller_fields(d.controller if d is not None else None),
    )


def _controller_fields(c: PdControllerConfig | None) -> dict[str, float]:
    """PdSetup's controller fields (its interval stays 0, off, without a controller)."""
    if c is None:
        return {}
    return {"control_interval_s": c.interval_s, "switch_s": c.switch_s,
            "prefill_queue_high": c.prefill_queue_high, "decode_batch_high": c.decode_batch_high}


def simulated_replicas(cluster: ClusterConfig) -> int:
    """Replicas the simulation runs: with semi-PD each replica is two workers."""
    return 2 * cluster.num_replicas if cluster.semi_pd is not None else total_replicas(cluster)
