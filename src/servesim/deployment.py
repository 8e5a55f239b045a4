"""A deployment resolved from the config: catalog entries, memory plan and step model, pool by pool.

``resolve_deployment`` turns the ``cluster`` section into a ``Deployment``
(raises ``DeploymentError`` if the model does not fit); ``pool_deployments``
does it for each pool of the cluster, a heterogeneous one
(``cluster.pools``) or a P/D or prefill-offload cluster whose prefill side
runs on other GPUs, resolving every field a pool leaves null from the
``cluster`` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servesim.config import ClusterConfig, PoolConfig, ScenarioConfig
from servesim.errors import CatalogError, ConfigError, DeploymentError, ServesimError
from servesim.perf.catalog import Catalog
from servesim.perf.dtypes import KV_BYTES_PER_ELEM, WEIGHT_FORMATS
from servesim.perf.engines import VLLM_CPU_BLOCK_SIZE, engine_profile, engine_step_params, scheduler_defaults
from servesim.perf.expert_offload import ExpertOffloadStepModel, default_routing_consistency
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.kv_compression import memory_bytes_factor, read_bytes_factor, uniform_step_factors
from servesim.perf.memory import MemoryPlan, plan_memory
from servesim.perf.model_spec import ModelSpec
from servesim.perf.phase_scaled import PhaseScaledStepModel
from servesim.perf.power import PowerModel
from servesim.perf.steptime import StepTimeModel


@dataclass(frozen=True)
class Deployment:
    """The resolved pieces of a deployment: catalog entries, memory plan, step model."""

    model: ModelSpec
    hardware: HardwareSpec
    memory: MemoryPlan
    step_model: StepTimeModel  # or a wrapper with the same two methods (e.g. PhaseScaledStepModel)
    max_model_len: int
    power: PowerModel | None = None  # per-GPU power by phase (None: built without one)
    async_scheduling: bool = False  # the engine plans each step while the one before runs
    frontend_latency_s: float = 0.0  # the serving front end's fixed time per request (s)


def build_catalog(config: ScenarioConfig) -> Catalog:
    """The built-in catalog plus the scenario's extra files and inline entries."""
    catalog = with_catalog_files(Catalog.default(), config.catalog.files or [])
    if config.catalog.models or config.catalog.hardware:
        catalog = catalog.with_entries(models=dict(config.catalog.models), hardware=dict(config.catalog.hardware))
    return catalog


def with_catalog_files(catalog: Catalog, paths) -> Catalog:
    """``catalog.with_files(paths)``, with a file that is not UTF-8 text reported as a ``CatalogError``
    naming it (``Catalog.with_files`` reports files it cannot read and bad YAML itself)."""
    for path in paths:
        try:
            catalog = catalog.with_files([path])
        except UnicodeDecodeError as err:
            raise CatalogError(f"catalog file {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    return catalog


def build_deployment(config: ScenarioConfig, catalog: Catalog | None = None) -> Deployment:
    """Resolve the model and GPU, plan memory (raises ``DeploymentError`` if it does not fit)."""
    return resolve_deployment(calibrated(config), catalog)


def resolve_deployment(config: ScenarioConfig, catalog: Catalog | None) -> Deployment:
    """``build_deployment`` for a config whose calibration is already applied."""
    catalog = catalog or build_catalog(config)
    cluster = config.cluster
    model = catalog.model(cluster.model)
    hardware = catalog.hardware(cluster.hardware)
    kv_elem = KV_BYTES_PER_ELEM[cluster.kv_cache_dtype]
    memory_factor = read_factor = 1.0
    squeeze = cluster.kv_compression
    if squeeze is not None:
        memory_factor = memory_bytes_factor(squeeze.footprint_ratio, squeeze.paging, squeeze.uniform_waste)
        read_factor = read_bytes_factor(squeeze.footprint_ratio)
    offload = cluster.expert_offload
    resident = model  # what the GPU holds: with expert offloading, only the cached experts
    if offload is not None:
        if not model.is_moe:
            raise ConfigError(f"cluster.expert_offload: {model.id} is a dense model; expert offloading needs an MoE model")
        if not model.experts_per_token <= offload.gpu_experts_per_layer <= model.num_experts:
            raise ConfigError(
                f"cluster.expert_offload.gpu_experts_per_layer = {offload.gpu_experts_per_layer}: must lie in "
                f"{model.experts_per_token}..{model.num_experts} (experts per token..routed experts of {model.id})"
            )
        resident = model.model_copy(update={"num_experts": offload.gpu_experts_per_layer})

    def plan(reserve_gb: float | None) -> MemoryPlan:
        return _plan(
            offload is not None,
            resident,
            hardware,
            tensor_parallel=cluster.tensor_parallel,
            pipeline_parallel=cluster.pipeline_parallel,
            gpu_memory_utilization=cluster.gpu_memory_utilization,
            block_size=cluster.block_size,
            weight_bytes_per_param=WEIGHT_FORMATS[cluster.weight_dtype].bytes_per_param,
            kv_bytes_per_elem=kv_elem * memory_factor,
            activation_reserve_gb=reserve_gb,
            max_num_batched_tokens=config.scheduler.max_num_batched_tokens,
        )

    memory = plan(cluster.activation_reserve_gb)
    lora = cluster.lora
    if lora is not None and lora.memory == "partition":
        # The adapters' partition is held back from the KV cache, like the activations.
        memory = plan(memory.activation_reserve_bytes / 1e9 + lora.partition_gb)
    engine = engine_profile(cluster.engine, cluster.engine_version, config.scheduler.max_num_seqs, hardware)
    weight_format = WEIGHT_FORMATS[cluster.weight_dtype]
    # The GEMMs' format on this chip: FP8 weights on a chip without FP8 run dequantised at the BF16 rate.
    compute = weight_format.compute if hardware.tensor_flops_s(weight_format.compute) != hardware.bf16_flops_s else "bf16"
    kv_dtype = "fp8" if kv_elem == 1 else "bf16"
    params = engine_step_params(engine, hardware, compute, kv_dtype, cluster.tensor_parallel, config.perf, model,
                                cluster.expert_parallel)
    piecewise = engine.graph_mode == "piecewise" and cluster.cuda_graphs and not cluster.prefill_cuda_graph_tokens
    step_model = StepTimeModel(
        model,
        hardware,
        tensor_parallel=cluster.tensor_parallel,
        pipeline_parallel=cluster.pipeline_parallel,
        params=params,
        graph_mode="piecewise" if piecewise else "decode",
        max_graph_tokens=engine.max_graph_tokens,
        async_scheduling=engine.async_scheduling,
        cuda_graphs=cluster.cuda_graphs and engine.cuda_graphs,
        weight_bytes_per_param=WEIGHT_FORMATS[cluster.weight_dtype].bytes_per_param,
        kv_bytes_per_elem=kv_elem * read_factor,
        gemm_compute=WEIGHT_FORMATS[cluster.weight_dtype].compute,
        expert_parallel=cluster.expert_parallel,
        prefill_graph_tokens=cluster.prefill_cuda_graph_tokens,
    )
    if offload is not None:
        consistency = offload.routing_consistency
        step_model = ExpertOffloadStepModel(
            step_model, model, offload.gpu_experts_per_layer,
            default_routing_consistency(model) if consistency is None else consistency,
            miss=offload.miss, weight_bytes_per_param=WEIGHT_FORMATS[cluster.weight_dtype].bytes_per_param,
            pcie_bytes_per_s=offload.pcie_gb_per_s * 1e9, host_bytes_per_s=offload.host_gb_per_s * 1e9,
            cpu_flops_s=offload.cpu_tflops * 1e12,
        )
    power = _power_model(cluster, hardware)
    step_model = _phase_scaled(step_model, power, lora, squeeze)
    max_len = cluster.max_model_len or model.max_context
    frontend = cluster.frontend_latency_s
    return Deployment(model, hardware, memory, step_model, max_len, power, engine.async_scheduling,
                      engine.frontend_latency_s if frontend is None else frontend)


def _power_model(cluster, hardware) -> PowerModel:
    """The GPU's power by phase and its cap (``cluster.power``)."""
    p = cluster.power
    try:
        return PowerModel.build(hardware.tdp_w, p.idle_fraction, p.decode_fraction, p.prefill_fraction, p.cap_w,
                                p.decode_frequency_sensitivity)
    except ValueError as err:
        raise ConfigError(f"cluster.power.cap_w = {p.cap_w}: {err}") from None


def _phase_scaled(step_model, power: PowerModel, lora, squeeze):
    """``step_model`` with the phase slowdowns multiplied into one wrapper: the power cap's clock,
    LoRA's kernels, uniform pages under KV compression (unwrapped when there are none)."""
    prefill_factor, decode_factor = power.prefill_time_factor, power.decode_time_factor
    if lora is not None:
        prefill_factor *= 1.0 + lora.step_overhead
        decode_factor *= 1.0 + lora.step_overhead
    if squeeze is not None:
        layout_prefill, layout_decode = uniform_step_factors(
            squeeze.paging, squeeze.uniform_prefill_overhead, squeeze.uniform_decode_slowdown)
        prefill_factor *= layout_prefill
        decode_factor *= layout_decode
    if prefill_factor != 1.0 or decode_factor != 1.0:
        return PhaseScaledStepModel(step_model, prefill_factor, decode_factor)
    return step_model


def _plan(offloading: bool, *args, **kwargs) -> MemoryPlan:
    """``plan_memory``; with expert offloading, a model that does not fit also hears of the cache size."""
    try:
        return plan_memory(*args, **kwargs)
    except DeploymentError as err:
        if not offloading:
            raise
        raise DeploymentError(f"{err}; or keep fewer experts on the GPU (cluster.expert_offload.gpu_experts_per_layer)") from None


def with_engine_defaults(config: ScenarioConfig, catalog: Catalog | None = None) -> ScenarioConfig:
    """``config`` with the scheduler limits it leaves unset set to the engine's defaults on
    ``cluster.hardware`` (``servesim.perf.engines.scheduler_defaults``), and vLLM's block size
    of 128 on a CPU device when ``cluster.block_size`` is unset; idempotent."""
    sched = config.scheduler
    unset = {"max_num_seqs", "max_num_batched_tokens"} - sched.model_fields_set
    cpu_block = config.cluster.engine == "vllm" and "block_size" not in config.cluster.model_fields_set
    if not unset and not cpu_block:
        return config
    hardware = (catalog or build_catalog(config)).hardware(config.cluster.hardware)  # one catalog for both
    if cpu_block and hardware.device == "cpu":
        # vLLM's CPU backend pages the KV cache in blocks of 128 tokens unless told otherwise.
        cluster = type(config.cluster).model_validate(
            {**config.cluster.model_dump(exclude_unset=True), "block_size": VLLM_CPU_BLOCK_SIZE})
        config = config.model_copy(update={"cluster": cluster})
    if not unset:
        return config
    seqs, tokens = scheduler_defaults(config.cluster.engine, hardware)
    update = {}
    if "max_num_seqs" in unset:
        # A token budget set below the engine's batch cap caps the batch (every sequence must decode).
        update["max_num_seqs"] = seqs if "max_num_batched_tokens" in unset else min(seqs, sched.max_num_batched_tokens)
    if "max_num_batched_tokens" in unset:
        # vLLM raises its budget to the batch cap when the cap is set above it.
        update["max_num_batched_tokens"] = max(tokens, update.get("max_num_seqs", sched.max_num_seqs))
    resolved = type(sched).model_validate({**sched.model_dump(exclude_unset=True), **update})
    return config.model_copy(update={"scheduler": resolved})


def calibrated(config: ScenarioConfig) -> ScenarioConfig:
    """``config`` with the engine's defaults filled in (``with_engine_defaults``), ``perf``
    = its calibration file's values under the fields set explicitly in ``perf``, and
    ``cluster.frontend_latency_s`` the calibration's where the scenario leaves it null.

    Every field of the returned ``perf`` counts as set, so calibrating again
    (or re-running the config a run wrote) changes nothing.
    """
    config = with_engine_defaults(config)
    if config.calibration is None:
        return config
    from servesim.perf.calibration_file import apply_calibration

    calibration = read_calibration(config.calibration)
    where = f"calibration file {config.calibration}"
    update: dict = {"perf": apply_calibration(config.perf, calibration, config.cluster.hardware, where)}
    if calibration.frontend_latency_s is not None and config.cluster.frontend_latency_s is None:
        # A calibration probed from a live endpoint knows its API server's time per request.
        update["cluster"] = config.cluster.model_copy(update={"frontend_latency_s": calibration.frontend_latency_s})
    return config.model_copy(update=update)


def read_calibration(path: str | Path):
    """``load_calibration``, with a file that is not UTF-8 text reported as a ``ConfigError`` too."""
    from servesim.perf.calibration_file import load_calibration

    try:
        return load_calibration(path)
    except UnicodeDecodeError as err:  # load_calibration reports OSError and YAML errors itself
        raise ConfigError(f"calibration file {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None


def pool_deployments(config: ScenarioConfig) -> list[tuple[PoolConfig, Deployment]]:
    """Each pool's config (the cluster section's values where it leaves a field null) and
    deployment, in replica order.  A cluster of one kind of replica is one pool named after
    its model; a disaggregated cluster whose prefill pool, or a prefill offload whose remote
    cluster, has its own GPUs is two (prefill side first)."""
    catalog = build_catalog(config)
    config = with_engine_defaults(config, catalog)
    cluster = config.cluster
    pools = _resolved_pools(cluster)
    if pools is None:
        only = PoolConfig(name=cluster.model, num_replicas=total_replicas(cluster),
                          **{name: getattr(cluster, name) for name in _POOL_FIELDS})
        return [(only, resolve_deployment(config, catalog))]
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
            deployment = resolve_deployment(config.model_copy(update={"cluster": pool_cluster}), catalog)
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


def gpus_per_replica(pool: PoolConfig) -> int:
    """GPUs per replica of a resolved pool (see _pool_deployments)."""
    return pool.tensor_parallel * pool.pipeline_parallel


def fleet_usd_per_hr(pools: list[tuple[PoolConfig, Deployment]]) -> float | None:
    """The fleet's price per hour, pool by pool, or None when a pool's GPU has no price."""
    prices = [d.hardware.price_usd_per_gpu_hr for _, d in pools]
    if any(price is None for price in prices):
        return None
    return sum(p.num_replicas * gpus_per_replica(p) * price for (p, _), price in zip(pools, prices))


def total_replicas(cluster: ClusterConfig) -> int:
    """Replicas the run simulates (and pays for): with prefill offload, the remote ones too."""
    extra = cluster.prefill_offload.remote_prefill_replicas if cluster.prefill_offload is not None else 0
    return cluster.num_replicas + extra
