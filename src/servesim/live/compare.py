"""``servesim compare``: a simulation and a replay of the same workload, side by side.

Both folders are read back as request tables (``requests.parquet``) and summaries; every number
is computed here from the tables, with the summary's definitions (``servesim.metrics.summary``):

* ``ttft_*``, ``tpot_*``, ``e2e_*`` (``mean``, ``p50``, ``p90``, ``p99``; seconds): over finished
  requests, numpy's linear percentiles (``stats.describe``);
* ``requests_per_s``, ``output_tokens_per_s``: finished requests and their output tokens over the
  span, last finish minus first arrival;
* ``in_system_mean``, ``in_system_peak`` (requests): requests in the system over time, from
  arrival to finish for finished requests and to the end for requests still in flight at a
  simulation's horizon (rejected and failed requests leave no trace: a replay does not know when
  a failed request left); the mean is over ``[0, end]``, ``end`` the later of the two tables'
  last event, so both are averaged over one window; the peak is exact.  Both series are also
  sampled on a common grid of ``GRID_POINTS`` instants (the report's chart, and their mean
  absolute difference);
* ``num_finished``, ``num_failed`` (requests not finished: rejected, failed, or in flight);
* ``engine_ttft_mean``, ``engine_tpot_mean``, ``engine_e2e_mean`` (seconds), only for a replay
  of an engine that exports vLLM's latency histograms: the engine's own means over the replay,
  from ``metrics_before.txt`` and ``metrics_after.txt`` (sum and count of
  ``vllm:time_to_first_token_seconds``, ``vllm:request_time_per_output_token_seconds``,
  ``vllm:e2e_request_latency_seconds``), timed inside the server from each request's arrival
  there.  A client starved of CPU reads tokens late (on a 2-vCPU VM under an engine's load it
  stalls for 0.1-1 s now and then), which the client-side numbers include and the engine's do
  not.  The simulation's side is its mean TTFT, TPOT and E2E (it models the server, front end
  included).  Left out when the histograms are missing or counted other requests than the
  replay's finished ones (other traffic, or a failed request).

Errors are ``(sim - real) / real`` in percent; None where ``real`` is 0 or undefined (0 when both
are 0).  ``gate`` names the metrics whose absolute error exceeds a limit (undefined counts as
exceeding: a gate that cannot be checked fails).

Refused with a ``ConfigError`` (one line): a folder that is not a run's or a replay's, a second
folder that is not a replay, and two folders of different workloads (request ids, prompt or output
lengths, or, outside closed loops, arrival times).  Times: a replay's are wall-clock seconds, its
arrivals the scenario's divided by its ``--time-scale``; when the two folders' arrivals differ by
exactly that factor the pair is refused, naming the time scales, since a simulation cannot be
rescaled into another load.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ConfigError
from servesim.live.endpoint import metric_totals
from servesim.metrics.records import FINISHED, IN_FLIGHT, RequestTable
from servesim.metrics.stats import describe, json_float, ratio

#: Metric name -> (label, unit, display scale).
METRICS: dict[str, tuple[str, str, float]] = {
    **{f"{key}_{stat}": (f"{label} {stat}", unit, scale)
       for key, label, unit, scale in (("ttft", "TTFT", "ms", 1e3), ("tpot", "TPOT", "ms", 1e3),
                                       ("e2e", "E2E", "s", 1.0))
       for stat in ("mean", "p50", "p90", "p99")},
    "requests_per_s": ("throughput", "req/s", 1.0),
    "output_tokens_per_s": ("output throughput", "tok/s", 1.0),
    "in_system_mean": ("in system, mean", "requests", 1.0),
    "in_system_peak": ("in system, peak", "requests", 1.0),
    "num_finished": ("finished", "requests", 1.0),
    "num_failed": ("not finished", "requests", 1.0),
    **{f"engine_{key}_mean": (f"{label} mean, engine-timed", unit, scale)
       for key, label, unit, scale in (("ttft", "TTFT", "ms", 1e3), ("tpot", "TPOT", "ms", 1e3),
                                       ("e2e", "E2E", "s", 1.0))},
}
#: Engine-timed metric -> the vLLM histogram it reads.
ENGINE_HISTOGRAMS = {"engine_ttft_mean": "vllm:time_to_first_token_seconds",
                     "engine_tpot_mean": "vllm:request_time_per_output_token_seconds",
                     "engine_e2e_mean": "vllm:e2e_request_latency_seconds"}
DEFAULT_GATE = ("ttft_mean", "tpot_mean", "e2e_mean")
GRID_POINTS = 200
_ARRIVAL_ATOL_S = 1e-6


@dataclass(frozen=True)
class Side:
    """One folder read back: its requests (by request id), summary and how it was made."""

    path: Path
    requests: RequestTable
    summary: dict[str, Any]
    is_replay: bool
    time_scale: float
    closed_loop: bool


@dataclass(frozen=True)
class Comparison:
    """The two folders' metrics (``values``: name -> (sim, real, error_pct)) and their
    requests-in-system series on the common grid ``grid_s``."""

    sim: Side
    real: Side
    values: dict[str, tuple[float | None, float | None, float | None]]
    grid_s: np.ndarray
    sim_in_system: np.ndarray
    real_in_system: np.ndarray

    @property
    def in_system_mean_abs_diff(self) -> float | None:
        """Mean of ``|sim - real|`` requests in system over the grid."""
        return json_float(np.abs(self.sim_in_system - self.real_in_system).mean()) if len(self.grid_s) else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``servesim compare --json``."""
        return {
            "sim": str(self.sim.path), "replay": str(self.real.path), "time_scale": self.real.time_scale,
            "metrics": {name: {"sim": s, "real": r, "error_pct": e} for name, (s, r, e) in self.values.items()},
            "in_system": {"grid_points": len(self.grid_s),
                          "end_s": json_float(self.grid_s[-1]) if len(self.grid_s) else None,
                          "mean_abs_diff": self.in_system_mean_abs_diff},
        }


def compare_folders(sim_dir: str | Path, replay_dir: str | Path, from_send: bool = False) -> Comparison:
    """Read both folders, check they hold one workload, and compare them (module docstring).

    ``from_send``: the replay's latencies count from when each request was actually sent
    (``sent_s``) instead of when it was due: a client starved of CPU sends late, and the
    engine, which a simulation models, only sees the request then.  The simulation may then
    have either the scenario's arrival times or the replay's send times (``servesim run
    --arrivals-from REPLAY_DIR``: late sends bunch requests, and only a simulation of the
    bunched arrivals sees the queues they made).
    """
    sim = load_side(Path(sim_dir), "SIM_DIR")
    real = load_side(Path(replay_dir), "REPLAY_DIR")
    if not real.is_replay:
        raise ConfigError(f"REPLAY_DIR {real.path}: not a replay (its summary.json has no 'replay' section; "
                          "`servesim replay --out DIR` writes one)")
    if from_send:
        sent = replace(real, requests=replace(real.requests, arrival_s=_sent_s(real.path)))
        try:  # a simulation of the arrivals as sent (``servesim run --arrivals-from REPLAY_DIR``)
            check_same_workload(sim, sent)
        except ConfigError:
            check_same_workload(sim, real)  # or of the scenario's own arrival times
        real = sent
    else:
        check_same_workload(sim, real)
    return compare(sim, real)


def _sent_s(path: Path) -> np.ndarray:
    """The replay's ``sent_s`` column in request-id order (a request never sent keeps NaN)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path / "requests.parquet", columns=["request_id", "sent_s"])
    ids = table.column("request_id").to_numpy()
    sent = table.column("sent_s").to_numpy(zero_copy_only=False).astype(np.float64)
    return sent[np.argsort(ids, kind="stable")]


def load_side(path: Path, label: str) -> Side:
    """A run's or a replay's folder; ``ConfigError`` naming ``label`` if it is neither."""
    if not path.is_dir():
        raise ConfigError(f"{label} {path}: {'not a folder' if path.exists() else 'no such folder'}")
    missing = [name for name in ("summary.json", "requests.parquet") if not (path / name).is_file()]
    if missing:
        raise ConfigError(f"{label} {path}: not a run's or replay's folder (no {' or '.join(missing)})")
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{label} {path}: cannot read summary.json: {_first_line(err)}") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{label} {path}: summary.json is not a JSON object")
    replay = summary.get("replay") if isinstance(summary.get("replay"), dict) else None
    kind = ((_config(path, label) or {}).get("workload") or {}).get("kind")
    scale = float(replay.get("time_scale") or 1.0) if replay is not None else 1.0
    closed = bool(replay.get("closed_loop")) if replay is not None else kind == "closed_loop"
    return Side(path, _requests(path, label), summary, replay is not None, scale, closed)


def check_same_workload(sim: Side, real: Side) -> None:
    """``ConfigError`` unless both tables hold the same requests (ids, prompt and output lengths)
    and, outside closed loops, the same arrival times (see the module docstring)."""
    a, b = sim.requests, real.requests
    where = f"SIM_DIR {sim.path} and REPLAY_DIR {real.path}"
    if len(a) != len(b):
        raise ConfigError(f"{where} hold different workloads: {len(a):,} and {len(b):,} requests")
    if not np.array_equal(a.request_id, b.request_id):
        i = int(np.flatnonzero(a.request_id != b.request_id)[0])
        raise ConfigError(f"{where} hold different workloads: request ids differ (row {i}: {a.request_id[i]} and "
                          f"{b.request_id[i]})")
    for column in ("prompt_tokens", "output_tokens"):
        x, y = getattr(a, column), getattr(b, column)
        if not np.array_equal(x, y):
            i = int(np.flatnonzero(x != y)[0])
            raise ConfigError(f"{where} hold different workloads: request {a.request_id[i]} has {x[i]:,} "
                              f"{column.replace('_', ' ')} in SIM_DIR, {y[i]:,} in REPLAY_DIR")
    if not (sim.closed_loop or real.closed_loop):
        _check_arrivals(sim, real, where)


def compare(sim: Side, real: Side) -> Comparison:
    """The metrics of both sides and their errors (no checks; see ``compare_folders``)."""
    end = max(_last_event(sim.requests), _last_event(real.requests))
    sim_m, real_m = side_metrics(sim.requests, end), side_metrics(real.requests, end)
    values = {name: (sim_m[name], real_m[name], error_pct(sim_m[name], real_m[name])) for name in METRICS
              if name not in ENGINE_HISTOGRAMS}
    engine = engine_means(real.path, int(real_m["num_finished"] or 0)) if real.is_replay else {}
    for name, value in engine.items():
        simulated = sim_m[name.removeprefix("engine_")]
        values[name] = (simulated, value, error_pct(simulated, value))
    grid = np.linspace(0.0, end, GRID_POINTS) if end > 0 else np.zeros(0)
    return Comparison(sim, real, values, grid, in_system_at(sim.requests, grid, end),
                      in_system_at(real.requests, grid, end))


def side_metrics(requests: RequestTable, end_s: float) -> dict[str, float | None]:
    """Every metric of ``METRICS`` for one table; requests in system averaged over ``[0, end_s]``."""
    finished = requests.status == FINISHED
    out: dict[str, float | None] = {}
    for key, values in (("ttft", requests.ttft_s()), ("tpot", requests.tpot_s()), ("e2e", requests.e2e_s())):
        stats = describe(values[finished])
        out.update({f"{key}_{stat}": stats[stat] for stat in ("mean", "p50", "p90", "p99")})
    span = (json_float(requests.finish_s[finished].max() - requests.arrival_s.min()) if finished.any() else None)
    out["requests_per_s"] = ratio(int(finished.sum()), span)
    out["output_tokens_per_s"] = ratio(int(requests.tokens_generated[finished].sum()), span)
    start, stop = _stays(requests, end_s)
    out["in_system_mean"] = ratio(float((stop - start).sum()), end_s)
    out["in_system_peak"] = float(_peak(start, stop))
    out["num_finished"] = float(finished.sum())
    out["num_failed"] = float((~finished).sum())
    return out


def engine_means(replay_dir: Path, num_finished: int) -> dict[str, float]:
    """The engine's own mean latencies over a replay (``ENGINE_HISTOGRAMS``; seconds), from the
    ``/metrics`` texts it saved before and after; empty when either is missing, and a metric is
    left out when its histogram counted other than ``num_finished`` requests."""
    try:
        before = metric_totals((replay_dir / "metrics_before.txt").read_text(encoding="utf-8"))
        after = metric_totals((replay_dir / "metrics_after.txt").read_text(encoding="utf-8"))
    except OSError:
        return {}
    out = {}
    for name, family in ENGINE_HISTOGRAMS.items():
        if f"{family}_count" in after:
            # A histogram not yet observed has no samples: zero before the replay.
            total = after[f"{family}_sum"] - before.get(f"{family}_sum", 0.0)
            count = after[f"{family}_count"] - before.get(f"{family}_count", 0.0)
            if count == num_finished and count > 0:
                out[name] = total / count
    return out


def in_system_at(requests: RequestTable, grid_s: np.ndarray, end_s: float) -> np.ndarray:
    """Requests in the system at each instant of ``grid_s``: arrived at or before it, not yet left."""
    start, stop = (np.sort(times) for times in _stays(requests, end_s))
    return (np.searchsorted(start, grid_s, side="right") - np.searchsorted(stop, grid_s, side="right")).astype(float)


def error_pct(sim: float | None, real: float | None) -> float | None:
    """``(sim - real) / real`` in percent; 0 when both are 0; None when undefined."""
    if sim is None or real is None:
        return None
    if real == 0:
        return 0.0 if sim == 0 else None
    return json_float(100.0 * (sim - real) / real)


def gate(comparison: Comparison, metrics: list[str], max_error_pct: float) -> list[str]:
    """One line per metric of ``metrics`` whose absolute error exceeds ``max_error_pct`` (or is undefined)."""
    lines = []
    for name in metrics:
        if name not in comparison.values:
            lines.append(f"{name}: not measured (the replay saved no engine latency histograms)")
            continue
        sim, real, err = comparison.values[name]
        if err is None:
            lines.append(f"{name}: error undefined (sim {_plain(sim)}, real {_plain(real)})")
        elif abs(err) > max_error_pct:
            lines.append(f"{name}: error {err:+.2f}% exceeds {max_error_pct:g}% "
                         f"(sim {_plain(sim)}, real {_plain(real)})")
    return lines


def check_metric_names(names: list[str]) -> None:
    """``ConfigError`` for a name that is not one of ``METRICS``."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"option --metrics {','.join(names)}: unknown metric {unknown[0]!r}; "
                          f"choose from {', '.join(METRICS)}")


def comparison_rows(comparison: Comparison) -> list[list[str]]:
    """Rows of the comparison table: metric (unit), sim, real, error."""
    rows = []
    for name, (sim, real, err) in comparison.values.items():
        label, unit, scale = METRICS[name]
        digits = 0 if name.startswith("num_") or name == "in_system_peak" else 3 if unit == "s" else 2
        rows.append([f"{label} ({unit})", _fmt(sim, digits, scale), _fmt(real, digits, scale),
                     "-" if err is None else f"{err:+.2f}%"])
    return rows


COMPARISON_HEADER = ["metric", "sim", "real", "error (sim - real) / real"]


# ---------------------------------------------------------------- helpers
def _requests(path: Path, label: str) -> RequestTable:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path / "requests.parquet")
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ConfigError(f"{label} {path}: cannot read requests.parquet: {_first_line(err)}") from None
    names = [f.name for f in fields(RequestTable)]
    missing = [c for c in names if c not in table.column_names]
    if missing:
        raise ConfigError(f"{label} {path}: requests.parquet lacks column {missing[0]!r}; "
                          "not a run's or replay's table")
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in names}
    columns["reject_reason"] = np.asarray(columns["reject_reason"], dtype=object)
    order = np.argsort(columns["request_id"], kind="stable")
    return RequestTable(**{c: v[order] for c, v in columns.items()})


def _config(path: Path, label: str) -> dict[str, Any] | None:
    file = path / "config.yaml"
    if not file.is_file():
        return None
    from servesim.yaml_text import safe_load

    try:
        data = safe_load(file.read_text(encoding="utf-8"))
    except Exception as err:  # noqa: BLE001 - any unreadable config is the same one-line refusal
        raise ConfigError(f"{label} {path}: cannot read config.yaml: {_first_line(err)}") from None
    return data if isinstance(data, dict) else None


def _check_arrivals(sim: Side, real: Side, where: str) -> None:
    a, b = sim.requests.arrival_s, real.requests.arrival_s
    if np.allclose(a, b, rtol=1e-9, atol=_ARRIVAL_ATOL_S):
        return
    if sim.time_scale != real.time_scale and np.allclose(a * sim.time_scale, b * real.time_scale, rtol=1e-9,
                                                         atol=_ARRIVAL_ATOL_S * max(sim.time_scale, real.time_scale)):
        raise ConfigError(
            f"{where}: the replay ran at --time-scale {real.time_scale:g} and SIM_DIR at {sim.time_scale:g}, so their "
            f"arrivals differ by that factor; compare a replay at --time-scale {sim.time_scale:g}, or simulate "
            f"the load the replay sent (arrival times divided by {real.time_scale / sim.time_scale:g}: e.g. a trace's "
            "workload.rate_scale, a synthetic workload's arrival.rate_rps)")
    i = int(np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=_ARRIVAL_ATOL_S))[0])
    raise ConfigError(f"{where} hold different workloads: request {sim.requests.request_id[i]} arrives at "
                      f"{a[i]:.6f} s in SIM_DIR, {b[i]:.6f} s in REPLAY_DIR")


def _stays(requests: RequestTable, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(arrival, leave) of the requests that count as in the system (module docstring)."""
    finished = requests.status == FINISHED
    waiting = requests.status == IN_FLIGHT
    start = np.concatenate([requests.arrival_s[finished], requests.arrival_s[waiting]])
    stop = np.concatenate([requests.finish_s[finished], np.full(int(waiting.sum()), end_s)])
    return start, np.maximum(stop, start)


def _peak(start: np.ndarray, stop: np.ndarray) -> int:
    """Most stays overlapping at once (a stay leaving at the instant another arrives does not overlap)."""
    if len(start) == 0:
        return 0
    times = np.concatenate([stop, start])
    steps = np.concatenate([-np.ones(len(stop)), np.ones(len(start))])
    order = np.lexsort((steps, times))  # by time, leaves (-1) before arrivals (+1)
    return int(np.cumsum(steps[order]).max())


def _last_event(requests: RequestTable) -> float:
    finished = requests.status == FINISHED
    times = np.concatenate([requests.arrival_s, requests.finish_s[finished]])
    times = times[np.isfinite(times)]
    return float(times.max()) if len(times) else 0.0


def _fmt(x: float | None, digits: int, scale: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * scale:,.{digits}f}"


def _plain(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
