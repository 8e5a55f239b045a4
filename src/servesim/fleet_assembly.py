"""Fleet operations around a run: wiring into a built ``Simulation`` (autoscaling, cold starts,
failures and slowdowns: ``servesim.cluster.fleet``, ``autoscaling``, ``failures``), training the
RL autoscaler before the reported run, and the fleet's summary after it (docs/operations.md)."""

from __future__ import annotations

from typing import Any

from servesim.cluster.events import ARRIVAL
from servesim.config import ScenarioConfig
from servesim.core.rng import RandomStreams
from servesim.deployment import Deployment, gpus_per_replica


def fleet_managed(config: ScenarioConfig) -> bool:
    """Whether replicas come, go or fail in this run (then every replica plans step by step)."""
    f = config.failures
    return config.autoscaling is not None or (f is not None and _fails(f))


def needs_reference_path(config: ScenarioConfig) -> bool:
    """Whether the run must plan iteration by iteration: replicas fail mid-step (their work as of
    the failure must be known), or an elastic resize changes a replica's KV pool under a decode
    stretch that booked blocks ahead.  Autoscaling alone (replicas starting, draining, stopping
    when empty) keeps the fast path."""
    f = config.failures
    scaling = config.autoscaling
    return (f is not None and _fails(f)) or (scaling is not None and scaling.elastic is not None)


def _fails(f) -> bool:
    """Whether a failures section takes replicas down (random or scripted failures)."""
    return f.gpu_failures_per_hour > 0 or f.node_failures_per_hour > 0 or bool(f.scripted)


def cold_start_s(config: ScenarioConfig, pool, deployment: Deployment) -> tuple[float, float]:
    """(weight load seconds, total cold start seconds) of one replica of ``deployment``."""
    from servesim.cluster.fleet import cold_start_seconds

    cold = config.autoscaling.cold_start if config.autoscaling is not None else None
    gpus = gpus_per_replica(pool)
    weights = deployment.memory.weight_bytes_per_gpu * gpus
    if cold is None:  # failures without autoscaling: a replacement loads from storage, default timings
        from servesim.fleet_config import ColdStartConfig

        cold = ColdStartConfig()
    return cold_start_seconds(weights, gpus, cold.source, cold.bandwidth_gb_per_s, deployment.hardware.scaleup_bytes_s,
                              cold.provisioning_s, cold.warmup_s)


def attach_operations(config: ScenarioConfig, sim, pools: list, models: list, policy: Any = None) -> None:
    """Give ``sim`` its fleet (autoscaling and failures) and disturbances, as configured.

    ``models`` are the replicas' step models in replica order; ``policy`` replaces the
    configured autoscaling policy (the RL agent, kept across training episodes).
    """
    streams = RandomStreams(config.seed)
    disturb = None
    if config.failures is not None:
        from servesim.cluster.failures import Disturbances

        disturb = Disturbances(config.failures, sim, models, streams.stream("disturbances"))
        if not disturb.active and not (config.failures.link_degradation and sim._links):
            disturb = None
    sim.disturbances = disturb
    start_s = float(sim.workload.arrival_s[0]) if len(sim.workload) else 0.0
    if disturb is not None:
        sim.loop.schedule(start_s, ARRIVAL, _begin_disturbances, disturb)
    if not fleet_managed(config):
        return
    from servesim.cluster.autoscaling import make_policy
    from servesim.cluster.failures import FailureProcess
    from servesim.cluster.fleet import Fleet

    pool, deployment = pools[0]
    scaling = config.autoscaling
    fails = config.failures
    gpus = gpus_per_replica(pool)
    _, cold = cold_start_s(config, pool, deployment)
    if policy is None and scaling is not None:
        policy = make_policy(scaling, config.slo, streams.stream("autoscaler-rl"))
    interval = config.engine.timeseries_interval_s
    fast = bool(sim.replicas) and sim.replicas[0]._stretch_enabled  # new replicas plan as the first ones do

    def make_replica(i: int):
        model = disturb.model_for(i) if disturb is not None else models[0]
        return sim._make_replica(i, model, fast, interval)

    failures = None
    if fails is not None and _fails(fails):
        failures = FailureProcess(fails, gpus, streams.stream("failures"))
    n = config.cluster.num_replicas
    sim.fleet = Fleet(
        sim, make_replica,
        initial=n,
        min_replicas=scaling.min_replicas if scaling is not None else n,
        max_replicas=scaling.max_replicas if scaling is not None else n,
        gpus_per_replica=gpus,
        cold_start_s=cold,
        interval_s=scaling.interval_s if scaling is not None else 5.0,
        metrics_delay_s=scaling.metrics_delay_s if scaling is not None else 0.0,
        policy=policy,
        failures=failures,
        max_retries=fails.max_retries if fails is not None else 0,
        retry=fails is None or fails.in_flight == "retry",
        elastic=_elastic_scaler(config, deployment) if scaling is not None and scaling.elastic is not None else None,
    )
    sim.loop.schedule(start_s, ARRIVAL, _begin_fleet, sim.fleet)


def _elastic_scaler(config: ScenarioConfig, base: Deployment):
    """Deployments of each elastic size (tensor-parallel degree) and the scaler over them."""
    from servesim.cluster.elastic import ElasticScaler
    from servesim.deployment import build_catalog, resolve_deployment

    elastic = config.autoscaling.elastic
    catalog = build_catalog(config)
    sizes = list(elastic.gpu_steps)
    deployments = [
        resolve_deployment(config.model_copy(update={"cluster": config.cluster.model_copy(update={"tensor_parallel": k})}),
                           catalog)
        for k in sizes
    ]
    peer = elastic.peer_gb_per_s * 1e9 if elastic.peer_gb_per_s is not None else base.hardware.scaleup_bytes_s
    return ElasticScaler(sizes, [d.step_model for d in deployments], [d.memory.num_kv_blocks for d in deployments],
                         base.memory.weight_bytes_per_gpu * sizes[0], peer, elastic.switch_s)


def _begin_fleet(now: float, fleet) -> None:
    fleet.start(now)


def _begin_disturbances(now: float, disturb) -> None:
    disturb.begin(now)


def train_policy(config: ScenarioConfig, pools: list, workload, step_model) -> Any:
    """The RL autoscaler, trained over ``rl.episodes`` whole runs of the scenario (exploration
    falling linearly to none), ready for the greedy run that is reported; None for other policies."""
    scaling = config.autoscaling
    if scaling is None or scaling.policy != "rl":
        return None
    from servesim.assembly import build_simulation
    from servesim.cluster.autoscaling import make_policy

    policy = make_policy(scaling, config.slo, RandomStreams(config.seed).stream("autoscaler-rl"))
    episodes = scaling.rl.episodes
    for episode in range(episodes):
        policy.new_episode(scaling.rl.epsilon * (1.0 - episode / episodes))
        build_simulation(config, pools, workload, step_model, None, fleet_policy=policy).run()
    policy.new_episode(0.0, final=True)
    return policy


def span_bounds(config: ScenarioConfig, sim, requests) -> tuple[float, float]:
    """(start, end) of the run's span as the summary counts it: first arrival to last finish
    (the horizon, or the clock, when nothing finished)."""
    from servesim.metrics.records import FINISHED

    start = float(requests.arrival_s.min()) if len(requests) else 0.0
    finished = requests.status == FINISHED
    if finished.any():
        return start, start + float(requests.finish_s[finished].max() - requests.arrival_s.min())
    return start, config.horizon_s or sim.loop.now


def operations_summary(config: ScenarioConfig, sim, pools: list, requests, start_s: float, end_s: float) -> dict:
    """The ``fleet`` section, with ``availability`` at the top level (``servesim.metrics.fleet``)."""
    from servesim.metrics.fleet import fleet_summary, goodput_lost

    fleet = sim.fleet
    load_s, cold_s = cold_start_s(config, *pools[0])
    policy = config.autoscaling.policy if config.autoscaling is not None else "fixed"
    extra: dict[str, Any] = {"fleet": fleet_summary(fleet, sim.disturbances, start_s, end_s, cold_s, load_s, policy)}
    if fleet is not None:
        extra["availability"] = extra["fleet"]["availability"]
        extra["fleet"].update(goodput_lost(fleet.retried_ids(), requests, config.slo, end_s - start_s))
    return extra
