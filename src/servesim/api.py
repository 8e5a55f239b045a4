"""The Python entry point: ``simulate(config) -> Result``.

``simulate`` builds every component from a validated ``ScenarioConfig``,
runs the simulation, checks its books and summarises it.  The command line
(`servesim run`) is a thin layer over it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from servesim.assembly import build_simulation, simulated_replicas
from servesim.cluster.conservation import check_conservation, check_cost, check_fleet
from servesim.config import ScenarioConfig, load_config, validate_config
from servesim.core.rng import RandomStreams
from servesim.deployment import (  # noqa: F401 - build_catalog and build_deployment are part of the API
    Deployment,
    build_catalog,
    build_deployment,
    calibrated,
    fleet_usd_per_hr,
    gpus_per_replica,
    pool_deployments,
)
from servesim.errors import ConfigError
from servesim.fleet_assembly import operations_summary, span_bounds, train_policy
from servesim.limits import check_config, check_workload
from servesim.metrics.energy import energy_summary
from servesim.metrics.kv_cache import chunk_cache_summary, kv_cache_summary
from servesim.perf.expert_offload import ExpertOffloadStepModel
from servesim.metrics.pools import pool_summary
from servesim.metrics.programs import program_summary, program_table
from servesim.metrics.fleet import fleet_series_columns
from servesim.metrics.records import FINISHED, RequestTable, RunInfo, TimeSeries
from servesim.metrics.stats import json_float
from servesim.metrics.summary import summarize
from servesim.workload.builder import build_workload
from servesim.workload.request import Workload


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
    kv_cache_series: Any = None  # KvCacheSeries with prefix caching, else None
    programs: Any = None  # agent programs: program_table's columns, else None
    # Further time series by file stem (columns): fleet_timeseries with fleet operations,
    # power_timeseries with a row power budget.
    tables: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write requests.parquet, timeseries.parquet, config.yaml and summary.json (and, with
        prefix caching, kvcache_timeseries.parquet; with agent programs, programs.parquet; and
        each of ``tables`` as NAME.parquet) into ``out_dir``, created if missing.

        The files are written into a temporary folder beside ``out_dir`` and moved into place
        when all are written.  ``OutputError`` (before writing anything) if ``out_dir`` is a
        file or cannot be written, or holds anything but an empty folder or this same run
        (same ``config.yaml``); ``overwrite=True`` replaces another servesim output, never
        files servesim did not write (``servesim.out_dir``).
        """
        from servesim.out_dir import write_run_dir

        return write_run_dir(out_dir, self.write_files, self.config_text(), overwrite=overwrite,
                             label="output folder")

    def config_text(self) -> str:
        """The text of the run's ``config.yaml``."""
        from servesim.report.files import config_yaml

        return config_yaml(self.config.to_dict())

    def write_files(self, out_dir: Path) -> dict[str, Path]:
        """Write the files into the existing folder ``out_dir`` as they are, unchecked (``write``
        checks the folder and writes through this)."""
        import pyarrow as pa

        from servesim.report.files import write_outputs, write_parquet

        paths = write_outputs(out_dir, self.requests, self.timeseries, self.summary, self.config.to_dict())
        if self.kv_cache_series is not None:
            paths["kvcache_timeseries"] = out_dir / "kvcache_timeseries.parquet"
            write_parquet(paths["kvcache_timeseries"], self.kv_cache_series.to_arrow())
        if self.programs is not None:
            paths["programs"] = out_dir / "programs.parquet"
            write_parquet(paths["programs"], pa.table(self.programs))
        for name, columns in self.tables.items():
            paths[name] = out_dir / f"{name}.parquet"
            write_parquet(paths[name], pa.table(columns))
        return paths


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
    config = calibrated(_as_config(config))
    check_config(config)  # pre-flight limits (servesim.limits): before anything is built
    started = time.perf_counter()
    pools = pool_deployments(config)
    deployment = pools[0][1]
    if workload is None:
        workload = build_workload(config.workload, RandomStreams(config.seed))
    check_workload(config, workload)
    policy = train_policy(config, pools, workload, step_model)
    bar = progress(len(workload)) if progress is not None else None
    sim = build_simulation(config, pools, workload, step_model, bar, fleet_policy=policy)
    row = None  # the row power budget's controller (POLCA), when configured
    if config.cluster.power.row is not None:
        from servesim.cluster.power_budget import attach_power_budget

        row = attach_power_budget(config, pools, sim)
    offloads = [d.step_model for _, d in pools if isinstance(d.step_model, ExpertOffloadStepModel)]
    for model in offloads:
        model.counting = True  # the run's steps count; set-up estimates did not
    try:
        out = sim.run()
    finally:
        if bar is not None:
            bar.close()
    fleet = sim.fleet
    check_conservation(out.requests, sim.replicas, config.horizon_s, retired=fleet.retired if fleet is not None else (),
                       cache_served_tokens=sim.front.tokens_served if sim.front is not None else 0)
    cluster = config.cluster
    operations = config.autoscaling is not None or config.failures is not None
    start_s, end_s = span_bounds(config, sim, out.requests) if operations else (0.0, 0.0)
    mixed = len(pools) > 1  # GPUs of more than one kind or size
    split = cluster.semi_pd is not None  # two simulated workers per replica
    info = RunInfo(
        sim_time_s=out.sim_time_s,
        horizon_s=config.horizon_s,
        wall_time_s=time.perf_counter() - started,
        num_replicas=simulated_replicas(cluster) if fleet is None else len(sim.replicas),
        gpus_per_replica=gpus_per_replica(pools[0][0]) if len({gpus_per_replica(p) for p, _ in pools}) == 1 else 0,
        busy_time_s=out.busy_time_s if fleet is None else np.array(fleet.busy_by_slot()[0]),
        num_steps=out.num_steps,
        price_usd_per_gpu_hr=deployment.hardware.price_usd_per_gpu_hr,
        workload_skipped=dict(workload.skipped),
        num_role_switches=len(out.role_switches),
        num_gpus=sum(p.num_replicas * gpus_per_replica(p) for p, _ in pools) if mixed or split else None,
        usd_per_hr=fleet_usd_per_hr(pools) if mixed or split else None,
        gpu_seconds=sum(fleet.gpu_seconds(end_s)) if fleet is not None else None,
    )
    summary = summarize(out.requests, out.timeseries, info, config.slo)
    _check_cost_books(sim, pools, summary, end_s, out.sim_time_s)
    summary.update(_energy(sim, pools, out.requests, summary, split, row))
    if operations:
        summary.update(operations_summary(config, sim, pools, out.requests, start_s, end_s))
    programs = program_table(out.requests, workload) if workload.follows is not None else None
    summary.update(_feature_summaries(sim, out, workload, config, offloads, programs))
    if row is not None:
        summary["power_budget"] = row.summary(out.sim_time_s)
    tables = {}
    if fleet is not None:
        tables["fleet_timeseries"] = fleet_series_columns(fleet)
    if row is not None:
        tables["power_timeseries"] = row.series_columns()
    return Result(config, summary, out.requests, out.timeseries, info, deployment, sim.kv_series, programs, tables)


def _check_cost_books(sim, pools, summary: dict, end_s: float, clock_s: float) -> None:
    """The cost and failure books (``servesim.cluster.conservation``): the GPU-seconds the summary
    pays against every replica slot's provisioned time."""
    gpu_hours = summary["cost"]["gpu_hours"]
    paid = None if gpu_hours is None else gpu_hours * 3600.0
    if sim.fleet is not None:
        check_fleet(sim.fleet, paid, end_s, clock_s)
        return
    span = summary.get("span_s")
    gpus = sum(pool.num_replicas * gpus_per_replica(pool) for pool, _ in pools)
    check_cost(paid, None if span is None else gpus * span)


def _feature_summaries(sim, out, workload: Workload, config: ScenarioConfig, offloads: list, programs) -> dict:
    """The summary sections of the features a run switched on: pools, prefix caches, agent
    programs and pinning, LoRA adapters, expert offloading, chunk caches, semi-PD, a semantic cache."""
    extra: dict[str, Any] = {}
    schedulers = [r.scheduler for r in sim.replicas]
    bonus = None
    if sim.front is not None:
        from servesim.semantic.ic_cache import quality_bonus
        from servesim.semantic.summary import semantic_cache_summary

        extra["semantic_cache"] = semantic_cache_summary(sim.front, out.requests)
        if sim.front.ic is not None:
            bonus = quality_bonus(sim.front, sim.front.ic.quality_boost)
    if config.cluster.pools is not None:
        extra.update(pool_summary(out.requests, sim.pool_profiles, workload.difficulty, bonus))
    # The prefix caches' counters are cumulative: those of replicas that failed or were scaled
    # away count too (a cache shared by two workers once), as in the end-of-run books.
    retired = [r.scheduler for r in sim.fleet.retired] if sim.fleet is not None else []
    caches = list({id(s.prefix_cache): s.prefix_cache for s in schedulers + retired if s.prefix_cache is not None}.values())
    if caches:
        extra.update(kv_cache_summary(caches))
    if programs is not None:
        extra.update(program_summary(programs))
        if sim.pinning is not None:
            extra["kv_pinning"] = {"pins": sim.pinning.num_pins,
                                   "pinned_block_seconds": json_float(sim.pinning.pinned_block_seconds)}
    adapters = [s.adapters for s in schedulers if s.adapters is not None]
    if adapters:
        extra["lora"] = {
            "loads": sum(a.num_loads for a in adapters),
            "bytes_loaded": json_float(sum(a.bytes_loaded for a in adapters)),
            "load_stall_s": json_float(sum(a.stall_time_s for a in adapters)),
            "resident_at_end": sum(a.resident() for a in adapters),
        }
    if offloads:
        extra["expert_offload"] = {
            "hit_rate": json_float(offloads[0].hit_rate),
            "missed_experts": json_float(sum(m.missed_experts for m in offloads)),
            "bytes_loaded": json_float(sum(m.loaded_bytes for m in offloads)),
            "miss_time_s": json_float(sum(m.miss_time_s for m in offloads)),
        }
    chunk_caches = [s.chunk_cache for s in schedulers if s.chunk_cache is not None]
    if chunk_caches:
        extra["chunk_cache"] = chunk_cache_summary(chunk_caches)
    if config.cluster.semi_pd is not None:
        extra["semi_pd"] = {
            "split_changes": len(out.split_changes),
            "final_prefill_shares": [json_float(s.prefill_share) for s in sim.semi_pd_splits],
        }
    return extra


def _energy(sim, pools, requests, summary: dict, split: bool, row=None) -> dict:
    """Energy and capacity cost (``servesim.metrics.energy``); semi-PD's two workers share their
    GPUs, which this model does not split, so its energy is left undefined.  Under a row power
    budget (``row``) time run capped is priced at the capped power."""
    finished = requests.status == FINISHED
    out_tokens = int(requests.tokens_generated[finished].sum())
    tokens = out_tokens + int(requests.prompt_tokens[finished].sum())
    span = None if split else summary.get("span_s")
    gpus, powers = [], []
    for pool, deployment in pools:  # pools are in replica order (semi-PD, left undefined, aside)
        gpus += [gpus_per_replica(pool)] * pool.num_replicas
        powers += [deployment.power] * pool.num_replicas
    if row is not None:
        powers = row.split_powers()
    busy_prefill = [r.busy_prefill_s for r in sim.replicas]
    busy = [r.busy_time_s for r in sim.replicas]
    lives = None
    if sim.fleet is not None and span is not None:  # replicas came and went: each paid for its own time
        busy, busy_prefill = sim.fleet.busy_by_slot()
        start = float(requests.arrival_s.min())
        lives = sim.fleet.replica_seconds(start + span)
        # Elastic slots changed size: their time-weighted mean GPU count.
        gpus = [g / t if t > 0 else gpus[0] for g, t in zip(sim.fleet.gpu_seconds(start + span), lives)]
        powers = [powers[0]] * len(busy)
    return energy_summary(busy_prefill, busy, gpus, powers, span, out_tokens, tokens, summary["cost"]["usd"], lives)


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
