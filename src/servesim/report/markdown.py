"""The markdown summary written beside the HTML report (``report.md``).

The numbers are the summary's own (``summary.json``; for a sweep, the
``runs`` and ``trials`` rows), formatted, never recomputed: latencies in
milliseconds with 2 decimals (E2E in seconds with 3), rates with 2,
shares as percentages with 2, money in dollars with 4 significant digits
below $1.  ``headline_rows`` is shared with the HTML page, so both show the
same figures.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from servesim.report import sweep_charts
from servesim.report.sources import OPTIONAL_TABLES, RunData, SweepData

_LATENCY_KEYS = (("ttft_s", "TTFT", 1e3, "ms"), ("tpot_s", "TPOT", 1e3, "ms"), ("e2e_s", "E2E", 1.0, "s"),
                 ("queue_delay_s", "Queue delay", 1e3, "ms"), ("max_itl_s", "Max ITL", 1e3, "ms"))
_STATS = ("mean", "p50", "p90", "p99", "max")


# ---------------------------------------------------------------- formatting
def fmt(x: Any, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    """``x * scale`` with ``digits`` decimals and thousands separators; ``-`` when undefined."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    return f"{x * scale:,.{digits}f}{suffix}"


def money(x: Any) -> str:
    """Dollars: 2 decimals from $1, else 4 significant digits (small runs do not read $0.00)."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4g}"


def pct(x: Any) -> str:
    return fmt(x, 2, 100.0, "%")


def headline_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of a run's headline numbers, in display order."""
    s = summary
    slo = s.get("slo") or {}
    cost = s.get("cost") or {}
    rows = [
        ("Requests (finished / rejected / in flight)",
         f"{s.get('num_requests', 0):,} ({s.get('num_finished', 0):,} / {s.get('num_rejected', 0):,} / "
         f"{s.get('num_in_flight', 0):,})"),
        ("TTFT p50 / p99", f"{fmt(_stat(s, 'ttft_s', 'p50'), 2, 1e3)} / {fmt(_stat(s, 'ttft_s', 'p99'), 2, 1e3)} ms"),
        ("TPOT p50 / p99", f"{fmt(_stat(s, 'tpot_s', 'p50'), 2, 1e3)} / {fmt(_stat(s, 'tpot_s', 'p99'), 2, 1e3)} ms"),
        ("E2E p50 / p99", f"{fmt(_stat(s, 'e2e_s', 'p50'), 3)} / {fmt(_stat(s, 'e2e_s', 'p99'), 3)} s"),
        ("Throughput", f"{fmt(s.get('requests_per_s'))} req/s, {fmt(s.get('output_tokens_per_s'))} output tok/s"),
        ("SLO attainment", f"{pct(slo.get('attainment'))} (goodput {fmt(slo.get('goodput_rps'))} req/s)"),
        ("Replicas x GPUs each", f"{_or_dash(s.get('num_replicas'))} x {s.get('gpus_per_replica') or '-'}"),
        ("Cost", f"{money(cost.get('usd'))} ({fmt(cost.get('gpu_hours'), 3)} GPU-h at "
                 f"{money(cost.get('price_usd_per_gpu_hr'))}/GPU-h; {money(cost.get('usd_per_million_output_tokens'))}"
                 " per 1M output tokens)"),
        ("Energy", f"{fmt(_kwh(s.get('energy_j')), 4)} kWh ({fmt(s.get('energy_per_token_j'), 4)} J per output token, "
                   f"mean {fmt((s.get('power_w') or {}).get('mean'), 1)} W)"),
    ]
    if s.get("fleet") and "replicas" in s["fleet"]:
        f = s["fleet"]
        rows.append(("Fleet", f"mean {fmt(f['replicas'].get('mean_provisioned'))} replicas (peak "
                              f"{f['replicas'].get('peak_provisioned')}), availability {pct(f.get('availability'))}"))
    return rows


def replay_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of a replay's own facts (``summary["replay"]``); empty for a simulation."""
    r = summary.get("replay")
    if not isinstance(r, dict):
        return []
    lag = r.get("send_lag_s") or {}
    cpu = r.get("cpu") or {}
    return [
        ("Endpoint (model)", f"{r.get('endpoint')} ({r.get('model')})"),
        ("Started (UTC), time scale", f"{r.get('started_at')}, {fmt(r.get('time_scale'), 2)}x"),
        ("Send lag p50 / p99 / max", f"{fmt(lag.get('p50'), 2, 1e3)} / {fmt(lag.get('p99'), 2, 1e3)} / "
                                     f"{fmt(lag.get('max'), 2, 1e3)} ms"),
        ("Other processes' CPU (max in one interval)",
         f"{pct(cpu.get('others_share'))} ({pct(cpu.get('others_share_max'))}) of {cpu.get('num_cpus') or '-'} cores"),
    ]


def comparison_markdown(comparison: Any) -> list[str]:
    """The "Simulation vs replay" section (``servesim report --compare``), as markdown lines."""
    from servesim.live.compare import COMPARISON_HEADER, comparison_rows

    return ["## Simulation vs replay", "", f"Replay: {comparison.real.path}", "",
            _table(COMPARISON_HEADER, comparison_rows(comparison)), "",
            f"Requests in system over time: mean |sim - real| {fmt(comparison.in_system_mean_abs_diff)} requests "
            f"over {len(comparison.grid_s)} instants.", ""]


def _or_dash(x: Any) -> str:
    return "-" if x is None else str(x)


def latency_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the latency table: metric (unit), n, mean, p50, p90, p99, max."""
    rows = []
    for key, name, scale, unit in _LATENCY_KEYS:
        d = summary.get(key) or {}
        digits = 3 if unit == "s" else 2
        rows.append([f"{name} ({unit})", f"{d.get('count', 0):,}", *(fmt(d.get(k), digits, scale) for k in _STATS)])
    return rows


LATENCY_HEADER = ["metric", "n", *_STATS]


# ---------------------------------------------------------------- run
def run_markdown(run: RunData, html_name: str | None = None, comparison: Any = None) -> str:
    """The summary of one run (or replay) as markdown; with ``comparison`` (a
    ``servesim.live.compare.Comparison``) a section comparing it with a replay."""
    s = run.summary
    lines = [f"# servesim {run_kind(s)}: {run.name}", ""]
    if html_name:
        lines += [f"Charts: [{html_name}]({html_name})", ""]
    lines += [_table(["", "value"], [list(r) for r in headline_rows(s) + replay_rows(s)]), ""]
    lines += ["## Latency", "", _table(LATENCY_HEADER, latency_rows(s)), ""]
    if comparison is not None:
        lines += comparison_markdown(comparison)
    targets = {k: v for k, v in ((s.get("slo") or {}).get("targets") or {}).items() if v is not None}
    if targets:
        lines += ["## SLO", "", "Targets: " + ", ".join(f"{k} <= {fmt(v, 1, 1e3)} ms" for k, v in targets.items())
                  + f"; met by {(s.get('slo') or {}).get('num_met', 0):,} requests.", ""]
    missing = [f"{stem}.parquet" for stem in OPTIONAL_TABLES if stem not in run.tables]
    lines += ["## Files", "", "Read: summary.json" + "".join(
        f", {name}" for name, have in (("requests.parquet", run.requests is not None),
                                       ("timeseries.parquet", run.timeseries is not None),
                                       ("config.yaml", run.config is not None)) if have)
              + "".join(f", {stem}.parquet" for stem in run.tables) + ".",
              "Not in this run: " + (", ".join(missing) if missing else "none") + ".", ""]
    return "\n".join(lines)


def run_kind(summary: dict[str, Any]) -> str:
    """'replay' for a replay's summary (``servesim replay``), else 'run'."""
    return "replay" if isinstance(summary.get("replay"), dict) else "run"


def _stat(summary: dict[str, Any], key: str, stat: str) -> Any:
    return (summary.get(key) or {}).get(stat)


def _kwh(joules: Any) -> Any:
    return None if joules is None else joules / 3.6e6


# ---------------------------------------------------------------- sweep and search
def run_table(sweep: SweepData) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the runs table: hash, status, axes, headline metrics, wall time."""
    metrics = [m for m in sweep_charts.SWEEP_METRICS if m[0] in sweep.run_columns]
    header = ["config_hash", "status", *(sweep_charts.axis_label(a) for a in sweep.axis_columns),
              *(m[1] for m in metrics), "wall (s)"]
    rows = []
    for r in sweep.runs:
        rows.append([str(r.get("config_hash")), str(r.get("status")), *(_cell(r.get(a)) for a in sweep.axis_columns),
                     *(fmt(r.get(m[0]), 2, m[2]) for m in metrics), fmt(r.get("wall_s"))])
    return header, rows


def failed_table(sweep: SweepData) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the failed runs: hash, axes, error."""
    header = ["config_hash", *(sweep_charts.axis_label(a) for a in sweep.axis_columns), "error"]
    rows = [[str(r.get("config_hash")), *(_cell(r.get(a)) for a in sweep.axis_columns), str(r.get("error") or "")]
            for r in sweep.runs if r.get("status") != "done"]
    return header, rows


def trial_table(sweep: SweepData) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the search's trials, the Pareto points marked ``yes``."""
    objectives = sweep_charts.objective_columns(sweep)
    header = ["trial", "config_hash", "feasible", "pruned", *objectives, "Pareto"]
    rows = []
    for t, on_front in zip(sweep.trials or [], sweep_charts.pareto_flags(sweep)):
        rows.append([str(t.get("trial")), str(t.get("config_hash")), _yes(t.get("feasible")), _yes(t.get("pruned")),
                     *(fmt(t.get(o), 4) for o in objectives), "yes" if on_front else ""])
    return header, rows


def best_rows(sweep: SweepData) -> list[tuple[str, str]]:
    """(label, value) describing the best feasible deployment of a search; empty when none."""
    best = sweep_charts.best_trial(sweep)
    if best is None:
        return []
    run = next((r for r in sweep.runs if r.get("config_hash") == best.get("config_hash")), {})
    rows = [("trial", str(best.get("trial"))), ("config_hash", str(best.get("config_hash")))]
    rows += [(o, fmt(best.get(o), 4)) for o in sweep_charts.objective_columns(sweep)]
    rows += [(sweep_charts.axis_label(a), _cell(run.get(a))) for a in sweep.axis_columns]
    rows += [(m[1], fmt(run.get(m[0]), 2, m[2])) for m in sweep_charts.SWEEP_METRICS if run.get(m[0]) is not None]
    return rows


def sweep_markdown(sweep: SweepData, html_name: str | None = None) -> str:
    """The summary of a sweep or search as markdown."""
    done = sum(1 for r in sweep.runs if r.get("status") == "done")
    failed = len(sweep.runs) - done
    lines = [f"# servesim {sweep.kind}: {sweep.name}", ""]
    if html_name:
        lines += [f"Charts: [{html_name}]({html_name})", ""]
    lines += [f"{len(sweep.runs)} runs: {done} done, {failed} failed.", ""]
    if sweep.kind == "search" or sweep.trials is not None:
        best = best_rows(sweep)
        lines += ["## Best feasible deployment", ""]
        lines += [_table(["", "value"], [list(r) for r in best]) if best else "No feasible trial.", ""]
        header, rows = trial_table(sweep)
        lines += ["## Trials", "", _table(header, rows), ""]
    header, rows = run_table(sweep)
    lines += ["## Runs", "", _table(header, rows), ""]
    header, rows = failed_table(sweep)
    lines += ["## Failed runs", "", _table(header, rows) if rows else "None.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- helpers
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _yes(value: Any) -> str:
    return "yes" if value else "no"
