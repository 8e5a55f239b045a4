"""The Python entry point: ``simulate(config) -> Result``.

``simulate`` builds every component from a validated ``ScenarioConfig``,
runs the simulation, checks its books and summarises it.  The command line
(`servesim run`) is a thin layer over it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from servesim.cluster.conservation import check_conservation
from servesim.cluster.disaggregation import PdSetup
from servesim.cluster.routers import make_router
from servesim.cluster.model_routing import PoolProfile, make_model_router
from servesim.cluster.semi_pd import SemiPdSetup, SmShareStepModel, SmSplit
from servesim.cluster.router_config import MODEL_ROUTERS
from servesim.cluster.simulation import ReplicaSetup, Simulation, fit_limit
from servesim.config import ClusterConfig, PdControllerConfig, PoolConfig, ScenarioConfig, load_config, validate_config
from servesim.core.rng import RandomStreams
from servesim.errors import ConfigError, DeploymentError, ServesimError
from servesim.metrics.pools import pool_summary
from servesim.metrics.stats import json_float
from servesim.perf.batch_shape import BatchShape
from servesim.metrics.records import RequestTable, RunInfo, TimeSeries
from servesim.metrics.summary import summarize
from servesim.perf.catalog import Catalog
from servesim.perf.dtypes import KV_BYTES_PER_ELEM, WEIGHT_FORMATS
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.model_spec import ModelSpec
from servesim.perf.memory import MemoryPlan, plan_memory
from servesim.perf.steptime import StepTimeModel
from servesim.workload.builder import build_workload
from servesim.workload.request import Workload


@dataclass(frozen=True)
class Deployment:
    """The resolved pieces of a deployment: catalog entries, memory plan, step model."""

    model: ModelSpec
    hardware: HardwareSpec
    memory: MemoryPlan
    step_model: StepTimeModel
    max_model_len: int


@dataclass(frozen=True)
class Result:
    """Everything a run produced.

    ``summary`` is the JSON-ready summary (see ``servesim.metrics.summary``);
    ``requests`` and ``timeseries`` are the per-request and sampled tables.
    """

    config: ScenarioConfig
    summary: dict[str, Any]
    requests: RequestTable
    timeseries: TimeSeries
    info: RunInfo
    deployment: Deployment

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write requests.parquet, timeseries.parquet, config.yaml and summary.json."""
        from servesim.report.files import write_outputs

        return write_outputs(Path(out_dir), self.requests, self.timeseries, self.summary, self.config.to_dict())


def build_catalog(config: ScenarioConfig) -> Catalog:
    """The built-in catalog plus the scenario's extra files and inline entries."""
    catalog = Catalog.default()
    if config.catalog.files:
        catalog = catalog.with_files(config.catalog.files)
    if config.catalog.models or config.catalog.hardware:
        catalog = catalog.with_entries(models=dict(config.catalog.models), hardware=dict(config.catalog.hardware))
    return catalog


def build_deployment(config: ScenarioConfig, catalog: Catalog | None = None) -> Deployment:
    """Resolve the model and GPU, plan memory (raises ``DeploymentError`` if it does not fit)."""
    return _build_deployment(_calibrated(config), catalog)


def _build_deployment(config: ScenarioConfig, catalog: Catalog | None) -> Deployment:
    """``build_deployment`` for a config whose calibration is already applied."""
    catalog = catalog or build_catalog(config)
    cluster = config.cluster
    model = catalog.model(cluster.model)
    hardware = catalog.hardware(cluster.hardware)
    memory = plan_memory(
        model,
        hardware,
        tensor_parallel=cluster.tensor_parallel,
        pipeline_parallel=cluster.pipeline_parallel,
        gpu_memory_utilization=cluster.gpu_memory_utilization,
        block_size=cluster.block_size,
        weight_bytes_per_param=WEIGHT_FORMATS[cluster.weight_dtype].bytes_per_param,
        kv_bytes_per_elem=KV_BYTES_PER_ELEM[cluster.kv_cache_dtype],
        activation_reserve_gb=cluster.activation_reserve_gb,
        max_num_batched_tokens=config.scheduler.max_num_batched_tokens,
    )
    step_model = StepTimeModel(
        model,
        hardware,
        tensor_parallel=cluster.tensor_parallel,
        pipeline_parallel=cluster.pipeline_parallel,
        params=config.perf,
        cuda_graphs=cluster.cuda_graphs,
        weight_bytes_per_param=WEIGHT_FORMATS[cluster.weight_dtype].bytes_per_param,
        kv_bytes_per_elem=KV_BYTES_PER_ELEM[cluster.kv_cache_dtype],
        gemm_compute=WEIGHT_FORMATS[cluster.weight_dtype].compute,
        expert_parallel=cluster.expert_parallel,
        prefill_graph_tokens=cluster.prefill_cuda_graph_tokens,
    )
    max_len = cluster.max_model_len or model.max_context
    return Deployment(model, hardware, memory, step_model, max_len)


def simulate(
    config: ScenarioConfig | dict[str, Any] | str | Path | None = None,
    *,
    workload: Workload | None = None,
    progress: Callable[[int], Any] | None = None,
    step_model: Any = None,
) -> Result:
    """Run one scenario and return its results.

    ``config`` is a ``ScenarioConfig``, plain data, a scenario file path, or
    None for the default scenario.  ``workload`` replaces the configured one
    (handy for hand-built tests); ``progress`` is called with the number of
    requests and returns an object with ``update(sim_time_s, done)`` and
    ``close()`` (see ``servesim.report.progress``); ``step_model`` replaces
    the step-time model (any object with ``time_s(shape)`` and
    ``decode_time_s(n, kv_tokens)``, see ``servesim.cluster.replica.StepPricer``).
    Raises a ``ServesimError`` subclass for bad input and ``InvariantError``
    if the run's books do not balance.
    """
    # Calibrated here too, so that result.config (and the config.yaml it
    # writes) holds the parameters the run used.
    config = _calibrated(_as_config(config))
    started = time.perf_counter()
    pools = _pool_deployments(config)
    deployment = pools[0][1]
    if workload is None:
        workload = build_workload(config.workload, RandomStreams(config.seed))
    bar = progress(len(workload)) if progress is not None else None
    sim = _make_simulation(config, pools, workload, step_model, bar)
    try:
        out = sim.run()
    finally:
        if bar is not None:
            bar.close()
    check_conservation(out.requests, sim.replicas)
    cluster = config.cluster
    mixed = len(pools) > 1  # GPUs of more than one kind or size
    split = cluster.semi_pd is not None  # two simulated workers per replica
    info = RunInfo(
        sim_time_s=out.sim_time_s,
        horizon_s=config.horizon_s,
        wall_time_s=time.perf_counter() - started,
        num_replicas=_simulated_replicas(cluster),
        gpus_per_replica=_gpus(pools[0][0]) if len({_gpus(p) for p, _ in pools}) == 1 else 0,
        busy_time_s=out.busy_time_s,
        num_steps=out.num_steps,
        price_usd_per_gpu_hr=deployment.hardware.price_usd_per_gpu_hr,
        workload_skipped=dict(workload.skipped),
        num_role_switches=len(out.role_switches),
        num_gpus=sum(p.num_replicas * _gpus(p) for p, _ in pools) if mixed or split else None,
        usd_per_hr=_fleet_usd_per_hr(pools) if mixed or split else None,
    )
    summary = summarize(out.requests, out.timeseries, info, config.slo)
    if cluster.pools is not None:
        summary.update(pool_summary(out.requests, sim.pool_profiles, workload.difficulty))
    if split:
        summary["semi_pd"] = {
            "split_changes": len(out.split_changes),
            "final_prefill_shares": [json_float(s.prefill_share) for s in sim.semi_pd_splits],
        }
    return Result(config, summary, out.requests, out.timeseries, info, deployment)


def _make_simulation(
    config: ScenarioConfig, pools: list[tuple[PoolConfig, Deployment]], workload: Workload, step_model: Any, bar: Any
) -> Simulation:
    """Wire the configured replicas, router and engine knobs around ``workload``.

    ``step_model`` (None: each pool's own) replaces every pool's step model.
    """
    cluster = config.cluster
    deployment = pools[0][1]
    prefix_tokens = workload.prefix_block_size if cluster.prefix_caching and workload.prefix_block_ids else 0
    layout = [
        (_replica_setup(config, d, prefix_tokens or 0), step_model or d.step_model, pool.num_replicas) for pool, d in pools
    ]
    setup = layout[0][0]
    semi = _semi_pd_setup(config, layout[0][1], workload) if cluster.semi_pd is not None else None
    if semi is not None:
        # Replica i's prefill worker is simulated replica i, its decode worker n + i.
        layout = [(setup, SmShareStepModel(layout[0][1], split, True), 1) for split in semi.splits] + [
            (setup, SmShareStepModel(layout[0][1], split, False), 1) for split in semi.splits
        ]
    if config.router.policy in MODEL_ROUTERS:
        if workload.difficulty is None:
            raise ConfigError(f"router.policy = {config.router.policy!r} needs a difficulty per request; the "
                              "workload has none (set workload.difficulty)")
        profiles = _pool_profiles(config, pools, layout, workload)
        mean_output = float(workload.output_tokens.mean()) if len(workload) else 1.0
        router = make_model_router(config.router, profiles, workload.difficulty, mean_output)
    else:
        profiles = _pool_profiles(config, pools, layout, workload) if cluster.pools is not None else []
        router = make_router(config.router, RandomStreams(config.seed).stream("router"))
    sim = Simulation(
        workload,
        setup,
        _simulated_replicas(cluster),
        router,
        layout[0][1],
        horizon_s=config.horizon_s,
        fast_path=config.engine.fast_path,
        timeseries_interval_s=config.engine.timeseries_interval_s,
        progress=bar,
        view_delay_s=config.router.view_delay_s,
        hold_short_s=config.router.laps_batch_window_s if config.router.policy == "laps" else 0.0,
        short_prompt_tokens=config.router.laps_threshold_tokens,
        pd=_pd_setup(config, pools) if semi is None else PdSetup(cluster.num_replicas, 0.0, 1.0, 0.0, paired=True),
        pools=layout if len(layout) > 1 or semi is not None else None,
        semi_pd=semi,
    )
    sim.pool_profiles = profiles
    sim.semi_pd_splits = list(semi.splits) if semi is not None else []
    return sim


def _semi_pd_setup(config: ScenarioConfig, step_model: Any, workload: Workload) -> SemiPdSetup:
    """Each replica's SM split, and what the controller predicts TTFT and TPOT from."""
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


def _replica_setup(config: ScenarioConfig, deployment: Deployment, prefix_tokens: int) -> ReplicaSetup:
    """What each replica of a deployment is built from."""
    blocks, block_size = deployment.memory.num_kv_blocks, config.cluster.block_size
    return ReplicaSetup(
        num_kv_blocks=blocks,
        block_size=block_size,
        max_model_len=deployment.max_model_len,
        scheduler=config.scheduler,
        # The cache holds as many prefix blocks as the replica's KV cache has room for.
        prefix_cache_blocks=blocks * block_size // prefix_tokens if prefix_tokens else 0,
        prefix_block_tokens=prefix_tokens,
    )


def _pool_deployments(config: ScenarioConfig) -> list[tuple[PoolConfig, Deployment]]:
    """Each pool's config (the cluster section's values where it leaves a field null) and
    deployment, in replica order.  A cluster of one kind of replica is one pool named after
    its model; a disaggregated cluster whose prefill pool, or a prefill offload whose remote
    cluster, has its own GPUs is two (prefill side first)."""
    cluster = config.cluster
    catalog = build_catalog(config)
    pools = _resolved_pools(cluster)
    if pools is None:
        only = PoolConfig(name=cluster.model, num_replicas=_total_replicas(cluster),
                          **{name: getattr(cluster, name) for name in _POOL_FIELDS})
        return [(only, _build_deployment(config, catalog))]
    if config.calibration is not None and any((p.hardware or cluster.hardware) != cluster.hardware for p, _ in pools):
        raise ConfigError("calibration: a calibration file is fitted for one GPU type, and the cluster's pools use "
                          f"others than cluster.hardware = {cluster.hardware!r}; drop it or use one GPU type")
    out = []
    for pool, where in pools:
        # Every deployment field resolved: the pool's own, else the cluster section's.
        inherited = {name: getattr(pool, name) if getattr(pool, name) is not None else getattr(cluster, name)
                     for name in _POOL_FIELDS}
        pool_cluster = cluster.model_copy(update={**inherited, "num_replicas": pool.num_replicas, "pools": None})
        try:
            deployment = _build_deployment(config.model_copy(update={"cluster": pool_cluster}), catalog)
        except ServesimError as err:
            raise type(err)(f"{where}: {err}") from None
        out.append((pool.model_copy(update=inherited), deployment))
    return out


def _resolved_pools(cluster: ClusterConfig) -> list[tuple[PoolConfig, str]] | None:
    """The cluster's pools with the config path that names each, or None for one kind of replica."""
    if cluster.pools is not None:
        return [(pool, f"cluster.pools[{i}] ({pool.name})") for i, pool in enumerate(cluster.pools)]
    d, o = cluster.disaggregation, cluster.prefill_offload
    if d is not None and (d.prefill_hardware is not None or d.prefill_tensor_parallel is not None):
        return [
            (PoolConfig(name="prefill", num_replicas=d.prefill_replicas, hardware=d.prefill_hardware,
                        tensor_parallel=d.prefill_tensor_parallel), "cluster.disaggregation (prefill pool)"),
            (PoolConfig(name="decode", num_replicas=d.decode_replicas), "cluster (decode pool)"),
        ]
    if o is not None and (o.remote_hardware is not None or o.remote_tensor_parallel is not None):
        return [
            (PoolConfig(name="remote-prefill", num_replicas=o.remote_prefill_replicas, hardware=o.remote_hardware,
                        tensor_parallel=o.remote_tensor_parallel), "cluster.prefill_offload (remote prefill cluster)"),
            (PoolConfig(name="local", num_replicas=cluster.num_replicas), "cluster (local replicas)"),
        ]
    return None


# Fields a pool may set for itself; null ones come from the cluster section.
_POOL_FIELDS = ("model", "hardware", "tensor_parallel", "pipeline_parallel", "weight_dtype", "kv_cache_dtype")


def _gpus(pool: PoolConfig) -> int:
    """GPUs per replica of a resolved pool (see _pool_deployments)."""
    return pool.tensor_parallel * pool.pipeline_parallel


def _fleet_usd_per_hr(pools: list[tuple[PoolConfig, Deployment]]) -> float | None:
    """The fleet's price per hour, pool by pool, or None when a pool's GPU has no price."""
    prices = [d.hardware.price_usd_per_gpu_hr for _, d in pools]
    if any(price is None for price in prices):
        return None
    return sum(p.num_replicas * _gpus(p) * price for (p, _), price in zip(pools, prices))


def _pool_profiles(config: ScenarioConfig, pools: list, layout: list, workload: Workload) -> list[PoolProfile]:
    """What model routers know of each pool: quality, price and step times (see PoolProfile)."""
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
            price = gpu_price * _gpus(pool) / 3600.0 / tokens_per_s * 1e6
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
        kv_bytes_per_token=deployment.memory.kv_bytes_per_token_per_gpu * _gpus(sender),
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


def _simulated_replicas(cluster: ClusterConfig) -> int:
    """Replicas the simulation runs: with semi-PD each replica is two workers."""
    return 2 * cluster.num_replicas if cluster.semi_pd is not None else _total_replicas(cluster)


def _total_replicas(cluster: ClusterConfig) -> int:
    """Replicas the run simulates (and pays for): with prefill offload, the remote ones too."""
    extra = cluster.prefill_offload.remote_prefill_replicas if cluster.prefill_offload is not None else 0
    return cluster.num_replicas + extra


def _calibrated(config: ScenarioConfig) -> ScenarioConfig:
    """``config`` with ``perf`` = its calibration file's values under the fields set explicitly in ``perf``.

    Every field of the returned ``perf`` counts as set, so calibrating again
    (or re-running the config a run wrote) changes nothing.
    """
    if config.calibration is None:
        return config
    from servesim.perf.calibration_file import apply_calibration, load_calibration

    calibration = load_calibration(config.calibration)
    where = f"calibration file {config.calibration}"
    return config.model_copy(update={"perf": apply_calibration(config.perf, calibration, config.cluster.hardware, where)})


def _as_config(config: ScenarioConfig | dict[str, Any] | str | Path | None) -> ScenarioConfig:
    if config is None:
        return load_config(None)
    if isinstance(config, ScenarioConfig):
        return config
    if isinstance(config, dict):
        return validate_config(config)
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise ConfigError(f"simulate() takes a ScenarioConfig, a dict or a file path, not {type(config).__name__}")
