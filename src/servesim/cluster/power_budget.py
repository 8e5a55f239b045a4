"""A row of servers under one power budget, oversubscribed, and the controller that caps it
(POLCA, Patel et al., "POLCA: Power Oversubscription in LLM Cloud Providers", 2023, arXiv
2308.12908; read as its abstract only: the mechanism below is this project's reading).

The row.  The fleet's GPUs fill servers of ``gpus_per_server`` in replica order;
the row's draw at an instant is each replica's GPUs at the power of what the
replica runs then (idle, pure decode, a step with prompt tokens;
``servesim.perf.power``) plus ``server_other_w`` per server.  The budget is
``budget_w``, or ``budget_servers`` servers at nameplate (GPU TDP x GPUs + other).

The controller.  Every ``interval_s`` from the first arrival it reads the row's
draw and moves between levels: 0 uncapped, 1 every GPU capped at
``capped_gpu_w``, 2 (optional) every GPU at ``hard_gpu_w``.  A reading above
``hard_threshold x budget`` goes to 2; above ``cap_threshold x budget`` to at
least 1; below ``uncap_threshold x budget`` back to 0; in between the level
stays (hysteresis).  Policy 'monitor' reads and never caps.  A level is a
per-GPU cap (a locked, lower clock): steps priced from the change on take the
cube law's factors (``PowerModel.build``) and draw the capped power; the
iteration in flight keeps its clock and draw, and a decode stretch is cut at its
first iteration boundary at or after the change (``Replica.set_step_model``),
so fast path and iteration-by-iteration runs stay identical.  Readings are
taken before the iterations ending at the same instant are booked (the tick's
priority is the arrivals'), so a step starting at a change runs at the new level.

Termination.  The controller reschedules itself only while some other event
is pending; the run's clock may so end up to one ``interval_s`` after the
last request finished (its last reading), and a horizon stops it as it stops
everything else.

Energy.  Each replica reports every booked step or stretch (start, end,
phase); the controller books its time under the level it ran at (the level in
force when it started), so the energy summary prices capped time at the
capped power (``split_powers``).  Draw statistics and time over budget come
from the readings (each stands for one interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from servesim.cluster.events import ARRIVAL
from servesim.metrics.stats import json_float
from servesim.perf.phase_scaled import PhaseScaledStepModel
from servesim.perf.power import PowerModel

IDLE, DECODE, PROMPT = 0, 1, 2  # Replica.step_phase


@dataclass(frozen=True)
class RowSetup:
    """The row and its controller, resolved to watts and counts."""

    budget_w: float
    servers: int
    gpus: int
    nameplate_w: float  # the row's servers at nameplate (W)
    server_other_w: float
    interval_s: float
    cap_threshold: float
    uncap_threshold: float
    hard_threshold: float  # inf: no hard level
    capping: bool  # False: monitor only


def next_level(level: int, reading_w: float, setup: RowSetup) -> int:
    """The controller's level after a reading (see the module doc); idempotent for a repeated reading."""
    if not setup.capping:
        return 0
    share = reading_w / setup.budget_w
    if share > setup.hard_threshold:
        return 2
    if share > setup.cap_threshold:
        return max(level, 1)
    if share < setup.uncap_threshold:
        return 0
    return level


class _SplitPower:
    """A replica's power models by level and its busy time booked under each, priced as one
    ``PowerModel`` is by ``servesim.metrics.energy`` (time at level 0 is what the other levels leave)."""

    __slots__ = ("levels", "prefill_s", "decode_s")

    def __init__(self, levels: list[PowerModel]) -> None:
        self.levels = levels
        self.prefill_s = [0.0] * len(levels)
        self.decode_s = [0.0] * len(levels)

    def energy_j(self, gpus: int, prefill_s: float, decode_s: float, idle_s: float) -> float:
        capped_prefill = sum(self.prefill_s[1:])
        capped_decode = sum(self.decode_s[1:])
        energy = self.levels[0].energy_j(gpus, max(prefill_s - capped_prefill, 0.0), max(decode_s - capped_decode, 0.0), idle_s)
        for level in range(1, len(self.levels)):
            energy += self.levels[level].energy_j(gpus, self.prefill_s[level], self.decode_s[level], 0.0)
        return energy


class PowerBudget:
    """The row's controller on the run's event loop (see the module doc)."""

    def __init__(self, setup: RowSetup, loop: Any, replicas: Sequence[Any], gpus: Sequence[int],
                 powers: Sequence[list[PowerModel]], models: Sequence[list[Any]]) -> None:
        """``powers[r][k]`` and ``models[r][k]``: replica r's power model and step model at level k."""
        self.setup = setup
        self.loop = loop
        self.replicas = list(replicas)
        self.gpus = list(gpus)
        self.models = [list(m) for m in models]
        self.split = [_SplitPower(list(p)) for p in powers]
        self.level = 0
        # The level each replica's step in flight (or next step) runs at: a change reaches a busy replica
        # at its next step.
        self._running = [0] * len(self.replicas)
        self.changes: list[tuple[float, int]] = []  # (time s, new level)
        self.readings: list[float] = []  # the row's draw at each tick (W)
        self.reading_times: list[float] = []  # when each reading was taken (s)
        self.reading_levels: list[int] = []  # the cap level in force after each reading
        self._start_s = 0.0
        for replica in self.replicas:
            replica.on_booked = self._booked

    def start(self, at_s: float) -> None:
        """Take the first reading at ``at_s`` (the first arrival), then every interval."""
        self._start_s = at_s
        self.loop.schedule(at_s, ARRIVAL, self._tick)

    def draw_w(self) -> float:
        """The row's draw now (W): each replica's GPUs at the power of what it runs, at the level it runs at."""
        total = self.setup.servers * self.setup.server_other_w
        for r, replica in enumerate(self.replicas):
            phase = replica.step_phase
            power = self.split[r].levels[self._running[r]]
            watts = power.idle_w if phase == IDLE else power.decode_w if phase == DECODE else power.prefill_w
            total += self.gpus[r] * watts
        return total

    def _tick(self, now: float, _payload: object) -> None:
        reading = self.draw_w()
        self.readings.append(reading)
        self.reading_times.append(now)
        level = next_level(self.level, reading, self.setup)
        if level != self.level:
            self.set_level(level, now)
        self.reading_levels.append(level)
        if self.loop.peek() is not None:  # something else will still happen: keep watching
            self.loop.schedule(now + self.setup.interval_s, ARRIVAL, self._tick)

    def set_level(self, level: int, now: float) -> None:
        """Cap (or uncap) every GPU at ``level`` from ``now`` on."""
        self.level = level
        self.changes.append((now, level))
        for r, replica in enumerate(self.replicas):
            if replica.step_phase == IDLE:
                self._running[r] = level
            replica.set_step_model(self.models[r][level], now)

    def _booked(self, index: int, start: float, end: float, prompt: bool) -> None:
        split = self.split[index]
        level = self._running[index]
        if prompt:
            split.prefill_s[level] += end - start
        else:
            split.decode_s[level] += end - start
        self._running[index] = self.level  # the next step starts now, at the current level

    def series_columns(self) -> dict[str, np.ndarray]:
        """The controller's readings as columns (written to power_timeseries.parquet)."""
        return {"time_s": np.array(self.reading_times), "row_power_w": np.array(self.readings),
                "share_of_budget": np.array(self.readings) / self.setup.budget_w,
                "cap_level": np.array(self.reading_levels, dtype=np.int64)}

    def split_powers(self) -> list[_SplitPower]:
        """Per replica, what ``servesim.metrics.energy`` prices its phase times with."""
        return self.split

    def summary(self, end_s: float) -> dict[str, Any]:
        """The ``power_budget`` section of the summary (docs/operations.md)."""
        s = self.setup
        readings = np.array(self.readings, dtype=np.float64)
        # Each level holds from its change to the next (level 0 from the first reading, the last to end_s).
        capped_s = hard_s = 0.0
        marks = self.changes + [(max(end_s, self.changes[-1][0]) if self.changes else end_s, -1)]
        level, since = 0, self._start_s
        for at, new in marks:
            if level >= 1:
                capped_s += at - since
            if level >= 2:
                hard_s += at - since
            level, since = new, at
        span = end_s - self._start_s
        over = int(np.count_nonzero(readings > s.budget_w))
        return {
            "policy": "polca" if s.capping else "monitor",
            "budget_w": json_float(s.budget_w),
            "servers": s.servers,
            "gpus": s.gpus,
            "nameplate_w": json_float(s.nameplate_w),
            "oversubscription": json_float(s.nameplate_w / s.budget_w),
            "readings": len(readings),
            "draw_w": {
                "mean": json_float(float(readings.mean())) if len(readings) else None,
                "p99": json_float(float(np.percentile(readings, 99))) if len(readings) else None,
                "peak": json_float(float(readings.max())) if len(readings) else None,
            },
            "peak_share_of_budget": json_float(float(readings.max()) / s.budget_w) if len(readings) else None,
            "cap_events": sum(1 for i, (_, new) in enumerate(self.changes)
                              if new > (self.changes[i - 1][1] if i else 0)),
            "time_capped_s": json_float(capped_s),
            "capped_fraction": json_float(capped_s / span) if span > 0 else None,
            "time_hard_capped_s": json_float(hard_s),
            "time_over_budget_s": json_float(over * s.interval_s),
            "over_budget_fraction": json_float(over / len(readings)) if len(readings) else None,
        }


def attach_power_budget(config: Any, pools: Sequence[tuple[Any, Any]], sim: Any) -> PowerBudget:
    """Build the row of ``config.cluster.power.row`` over ``sim``'s replicas and start its controller."""
    from servesim.deployment import gpus_per_replica
    from servesim.errors import ConfigError

    cluster = config.cluster
    p, row = cluster.power, cluster.power.row
    if cluster.semi_pd is not None:
        raise ConfigError("cluster.power.row: not with cluster.semi_pd, whose two workers share their GPUs")
    gpus: list[int] = []
    powers: list[list[PowerModel]] = []
    caps = [w for w in (row.capped_gpu_w, row.hard_gpu_w) if w is not None] if row.policy == "polca" else []
    for pool, deployment in pools:
        tdp = deployment.hardware.tdp_w
        levels = [deployment.power]
        for name, cap in zip(("capped_gpu_w", "hard_gpu_w"), caps):
            cap = cap if p.cap_w is None else min(cap, p.cap_w)  # a static cap below it still holds
            try:
                levels.append(PowerModel.build(tdp, p.idle_fraction, p.decode_fraction, p.prefill_fraction, cap,
                                               p.decode_frequency_sensitivity))
            except ValueError as err:
                raise ConfigError(f"cluster.power.row.{name} = {cap}: {err}") from None
        gpus += [gpus_per_replica(pool)] * pool.num_replicas
        powers += [levels] * pool.num_replicas
    models = []
    for replica, levels in zip(sim.replicas, powers):
        base, free = replica.step_model, levels[0]
        # Level k's factors relative to the replica's own (which may hold a static cap, LoRA, ...).
        models.append([base] + [PhaseScaledStepModel(base, m.prefill_time_factor / free.prefill_time_factor,
                                                     m.decode_time_factor / free.decode_time_factor) for m in levels[1:]])
    num_gpus = sum(gpus)
    servers = math.ceil(num_gpus / row.gpus_per_server)
    server_nameplate = row.gpus_per_server * pools[0][1].hardware.tdp_w + row.server_other_w
    budget = row.budget_w if row.budget_w is not None else row.budget_servers * server_nameplate
    setup = RowSetup(budget, servers, num_gpus, servers * server_nameplate, row.server_other_w, row.interval_s,
                     row.cap_threshold, row.uncap_threshold,
                     math.inf if row.hard_threshold is None else row.hard_threshold, row.policy == "polca")
    budget_ctl = PowerBudget(setup, sim.loop, sim.replicas, gpus, powers, models)
    first = float(sim.workload.arrival_s.min()) if len(sim.workload) else math.inf
    if first < math.inf:
        budget_ctl.start(first)
    return budget_ctl
