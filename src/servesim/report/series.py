"""The numbers behind the report's charts: pure numpy functions of a run's tables and summary.

* ``cdf_points``: an empirical CDF, sampled at evenly spaced ranks when long;
* ``rate_per_bin``: events per second in time bins (arrivals, completions);
* ``fleet_timeseries`` / ``summed_over_replicas``: per-replica samples as
  fleet-wide series, each replica's state at an instant being its last
  sample at or before it (summed over replicas; a replica silent for longer
  than ``hold_s`` counted idle);
* ``slo_shares``: the share of requests meeting each SLO target;
* ``pareto_mask``: the non-dominated rows of a table of objectives;
* ``energy_split_j``: a run's energy split into steps and idle time;
* ``axis_scale``: whether an axis should be logarithmic.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from servesim.report.sources import Columns, finished_mask

#: Most points a line or CDF is drawn with (keeps the HTML small; the shape is unchanged).
MAX_POINTS = 1500
_BIN_CHOICES_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def cdf_points(values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of the finite ``values``: ``(x, share <= x)``.

    With more than ``max_points`` values, the CDF is sampled at ``max_points``
    evenly spaced ranks (the first and last included): the points still lie
    exactly on the CDF.
    """
    v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    n = len(v)
    if n == 0:
        return v, v
    ranks = np.arange(n) if n <= max_points else np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return v[ranks], (ranks + 1) / n


def bin_width_s(span_s: float, target_bins: int = 120) -> float:
    """A round bin width (s) giving about ``target_bins`` bins over ``span_s``."""
    want = span_s / max(target_bins, 1)
    return float(next((b for b in _BIN_CHOICES_S if b >= want), _BIN_CHOICES_S[-1]))


def rate_per_bin(times_s: np.ndarray, start_s: float, end_s: float, width_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Events per second in bins of ``width_s`` from ``start_s``: ``(bin centres, rate)``.

    The last bin is cut at ``end_s`` and its rate divides by its real width,
    so a partial bin does not read low.
    """
    t = np.asarray(times_s, dtype=np.float64)
    t = t[np.isfinite(t)]
    num_bins = max(1, math.ceil((end_s - start_s) / width_s))
    edges = start_s + width_s * np.arange(num_bins + 1)
    edges[-1] = max(end_s, edges[-2] + 1e-9)
    counts, _ = np.histogram(t, bins=edges)
    return (edges[:-1] + edges[1:]) / 2, counts / np.diff(edges)


def sample_grid(times_s: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """The instants to evaluate per-replica states at: every distinct sample time, or
    ``max_points`` evenly spaced instants over their range when there are more."""
    t = np.unique(np.asarray(times_s, dtype=np.float64))
    if len(t) <= max_points:
        return t
    return np.linspace(t[0], t[-1], max_points)


def state_at(times_s: np.ndarray, values: np.ndarray, grid: np.ndarray,
             hold_s: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """One replica's value at each ``grid`` instant, its last sample at or before it, and whether
    that sample holds there: it exists and is at most ``hold_s`` old (else the value is 0);
    ``times_s`` ascending."""
    idx = np.searchsorted(times_s, grid, side="right") - 1
    held = idx >= 0
    held &= grid - np.asarray(times_s)[np.maximum(idx, 0)] <= hold_s
    return np.where(held, np.asarray(values)[np.maximum(idx, 0)], 0), held


def fleet_timeseries(ts: Columns, hold_s: float = math.inf, max_points: int = MAX_POINTS) -> dict[str, np.ndarray]:
    """The per-replica samples of ``timeseries.parquet`` as fleet-wide series on one grid.

    ``time_s``; ``queue_len`` and ``running``: summed over replicas;
    ``kv_usage``: KV blocks in use over blocks in all, summed over the replicas
    sampled so far (a fraction); ``kv_usage_max``: the busiest replica's fraction.

    A replica samples at step starts, at most once per sampling period, so one
    that has not sampled for ``hold_s`` (pass about two periods) has stopped
    stepping: it is counted idle, with nothing waiting or running and no KV
    blocks in use, its blocks still in the total.  (Without this, a replica
    that went idle just after a sample would keep its last batch for as long
    as it stays idle.)  A replica retired by fleet operations is counted idle
    in the same way; its blocks stay in the total.
    """
    grid = sample_grid(ts["time_s"], max_points)
    out = {name: np.zeros(len(grid)) for name in ("queue_len", "running", "kv_used", "kv_total")}
    kv_max = np.zeros(len(grid))
    for replica in np.unique(ts["replica"]):
        rows = np.flatnonzero(ts["replica"] == replica)
        rows = rows[np.argsort(ts["time_s"][rows], kind="stable")]
        t = ts["time_s"][rows]
        out["queue_len"] += state_at(t, ts["queue_len"][rows], grid, hold_s)[0]
        out["running"] += state_at(t, ts["running"][rows], grid, hold_s)[0]
        used = state_at(t, ts["kv_used_blocks"][rows], grid, hold_s)[0]
        total = state_at(t, ts["kv_total_blocks"][rows], grid)[0]  # capacity does not lapse
        out["kv_used"] += used
        out["kv_total"] += total
        kv_max = np.maximum(kv_max, np.divide(used, total, out=np.zeros(len(grid)), where=total > 0))
    kv = np.divide(out["kv_used"], out["kv_total"], out=np.zeros(len(grid)), where=out["kv_total"] > 0)
    return {"time_s": grid, "queue_len": out["queue_len"], "running": out["running"], "kv_usage": kv,
            "kv_usage_max": kv_max}


def summed_over_replicas(table: Columns, columns: Sequence[str], max_points: int = MAX_POINTS) -> dict[str, np.ndarray]:
    """Cumulative per-replica counters (``time_s``, ``replica``, ``columns``) summed over replicas on one grid."""
    grid = sample_grid(table["time_s"], max_points)
    out = {name: np.zeros(len(grid)) for name in columns}
    for replica in np.unique(table["replica"]):
        rows = np.flatnonzero(table["replica"] == replica)
        rows = rows[np.argsort(table["time_s"][rows], kind="stable")]
        for name in columns:
            out[name] += state_at(table["time_s"][rows], table[name][rows], grid)[0]
    return {"time_s": grid, **out}


def slo_shares(requests: Columns, targets: dict[str, float | None]) -> dict[str, float]:
    """Share of *all* requests meeting each set target alone, and all of them (``all``).

    As ``servesim.metrics.slo.slo_met``: only finished requests can meet a
    target, comparisons are inclusive, and a request of fewer than 2 tokens
    passes a TPOT target.
    """
    finished = finished_mask(requests)
    n = len(finished)
    met_all = finished.copy()
    shares: dict[str, float] = {}
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        target = targets.get(key)
        if target is None:
            continue
        with np.errstate(invalid="ignore"):
            ok = finished & (np.asarray(requests[key]) <= target)
        if key == "tpot_s":
            ok |= finished & (np.asarray(requests["tokens_generated"]) < 2)
        shares[key] = float(ok.sum() / n) if n else 0.0
        met_all &= ok
    if shares:
        shares["all"] = float(met_all.sum() / n) if n else 0.0
    return shares


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Rows of ``points`` (n x k, every objective to minimise) that no other row dominates
    (no worse in all objectives and better in one).  Rows with a NaN are never on the front."""
    pts = np.asarray(points, dtype=np.float64)
    ok = np.all(np.isfinite(pts), axis=1)
    mask = np.zeros(len(pts), dtype=bool)
    for i in np.flatnonzero(ok):
        others = pts[ok]
        dominated = np.any(np.all(others <= pts[i], axis=1) & np.any(others < pts[i], axis=1))
        mask[i] = not dominated
    return mask


def energy_split_j(summary: dict[str, Any], config: dict[str, Any] | None) -> dict[str, float] | None:
    """The run's energy as ``{"busy": J, "idle": J}``, or None where it cannot be split exactly.

    The summary gives the idle share of the GPU time (``idle_cost_usd / cost_usd``,
    both priced at one rate) and the GPU time (``cost.gpu_hours``); an idle GPU
    draws ``power.idle_fraction x tdp_w`` (``servesim.perf.power``), so idle energy
    is their product and the rest was drawn in steps.  Left unsplit for
    heterogeneous pools, semi-PD and a row power budget (several power levels).
    """
    energy, cost, idle_cost = summary.get("energy_j"), summary.get("cost_usd"), summary.get("idle_cost_usd")
    gpu_hours = (summary.get("cost") or {}).get("gpu_hours")
    cluster = (config or {}).get("cluster") or {}
    power = cluster.get("power") or {}
    if None in (energy, cost, idle_cost, gpu_hours) or not cost or cluster.get("pools") or cluster.get("semi_pd") \
            or power.get("row") is not None or power.get("idle_fraction") is None:
        return None
    tdp = _tdp_w(str(cluster.get("hardware")), config or {})
    if tdp is None:
        return None
    idle = gpu_hours * 3600.0 * (idle_cost / cost) * power["idle_fraction"] * tdp
    idle = min(idle, energy)
    return {"busy": energy - idle, "idle": idle}


def _tdp_w(hardware_id: str, config: dict[str, Any]) -> float | None:
    """The GPU's board power: the scenario's inline catalog entry, else the built-in catalog's."""
    inline = ((config.get("catalog") or {}).get("hardware") or {}).get(hardware_id) or {}
    if inline.get("tdp_w") is not None:
        return float(inline["tdp_w"])
    try:
        from servesim.perf.catalog import Catalog

        return float(Catalog.default().hardware(hardware_id).tdp_w)
    except Exception:  # an unknown or extra-file GPU: leave the energy unsplit
        return None


def axis_scale(values: Sequence[float]) -> str:
    """'log' when the finite values are all positive and span two decades or more (an overloaded
    deployment's latency would flatten the rest), else 'linear'.  Scale factors do not change it."""
    v = [x for x in values if math.isfinite(x)]
    return "log" if v and min(v) > 0 and max(v) / min(v) >= 100 else "linear"
