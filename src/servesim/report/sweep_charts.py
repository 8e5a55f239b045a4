"""The report's charts and selections of a sweep or search (``results.duckdb``, docs/sweeps.md).

Charts: throughput against p99 latency across runs; the metrics against
each numeric axis that varies; for a search, the Pareto front of each pair
of objectives (or one objective per trial).  Selections shared with the
markdown summary: the done runs, the varied axes, the objective columns
and their directions (``meta.spec_json``; minimise by default), the Pareto
flags (the ``pareto`` column, else computed) and the best feasible trial.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from servesim.report.charts import COLORS, Chart, plotly_modules, style
from servesim.report.series import axis_scale, pareto_mask
from servesim.report.sources import SweepData

# Summary metrics shown against sweep axes: (flattened column, label with unit, scale to the unit).
SWEEP_METRICS = (
    ("ttft_s__p99", "TTFT p99 (ms)", 1e3),
    ("tpot_s__p99", "TPOT p99 (ms)", 1e3),
    ("e2e_s__p99", "E2E p99 (s)", 1.0),
    ("requests_per_s", "throughput (req/s)", 1.0),
    ("output_tokens_per_s", "output tokens/s", 1.0),
    ("slo__attainment", "SLO attainment (%)", 100.0),
    ("cost__usd", "cost (USD)", 1.0),
    ("energy_per_token_j", "energy per output token (J)", 1.0),
)


def sweep_charts(sweep: SweepData) -> list[Chart]:
    """Throughput against latency, and each numeric axis against the metrics, over the done runs."""
    charts = [c for c in [throughput_latency_chart(sweep)] if c is not None]
    done = done_runs(sweep)
    for axis in varied_axes(sweep):
        if _numeric(done, axis):
            chart = axis_metrics_chart(sweep, axis)
            if chart is not None:
                charts.append(chart)
    return charts


def search_charts(sweep: SweepData) -> list[Chart]:
    """Pareto fronts (every pair of objectives) or the single objective per trial."""
    objectives = objective_columns(sweep)
    if not sweep.trials or not objectives:
        return []
    if len(objectives) == 1:
        return [objective_trials_chart(sweep, objectives[0])]
    pairs = [(a, b) for i, a in enumerate(objectives) for b in objectives[i + 1:]][:3]
    return [pareto_chart(sweep, x, y, i) for i, (x, y) in enumerate(pairs)]


def done_runs(sweep: SweepData) -> list[dict[str, Any]]:
    return [r for r in sweep.runs if r.get("status") == "done"]


def varied_axes(sweep: SweepData) -> list[str]:
    """The axes taking two or more values over the done runs (a one-value axis splits nothing)."""
    done = done_runs(sweep)
    return [a for a in sweep.axis_columns if len({json.dumps(r.get(a), default=str) for r in done}) > 1]


def axis_label(column: str) -> str:
    """``axis__cluster__num_replicas`` -> ``cluster.num_replicas``."""
    return column.removeprefix("axis__").replace("__", ".")


def objective_columns(sweep: SweepData) -> list[str]:
    """The trials table's objective columns: the search spec's objectives (``meta.spec_json``) when it
    names them; else every column but the fixed ones, the searched axes and the text columns
    (``state``, ``reason``) that ``servesim search`` adds."""
    named = [o.get("metric") for o in (sweep.spec or {}).get("objectives") or [] if isinstance(o, dict)]
    named = [m for m in named if m in sweep.trial_columns]
    if named:
        return named
    fixed = {"trial", "config_hash", "feasible", "pruned", "pareto", "state", "reason"}
    return [c for c in sweep.trial_columns if c not in fixed and not c.startswith("axis__")]


def objective_directions(sweep: SweepData) -> dict[str, str]:
    """Objective -> 'minimize' | 'maximize', from the search spec (``meta.spec_json``); minimise by default."""
    out = {c: "minimize" for c in objective_columns(sweep)}
    for obj in (sweep.spec or {}).get("objectives") or []:
        if isinstance(obj, dict) and obj.get("metric") in out and obj.get("direction") in ("minimize", "maximize"):
            out[obj["metric"]] = obj["direction"]
    return out


def pareto_flags(sweep: SweepData) -> list[bool]:
    """Per trial, whether it is on the Pareto front: the ``pareto`` column when the table has it, else
    computed over feasible, unpruned trials (objectives turned to minimisation)."""
    trials = sweep.trials or []
    if "pareto" in sweep.trial_columns:
        return [bool(t.get("pareto")) for t in trials]
    directions = objective_directions(sweep)
    sign = np.array([1.0 if directions[c] == "minimize" else -1.0 for c in directions])
    pts = np.array([[_num(t.get(c)) for c in directions] for t in trials], dtype=np.float64).reshape(len(trials), -1)
    eligible = np.array([bool(t.get("feasible")) and not t.get("pruned") for t in trials])
    pts[~eligible] = np.nan
    return [bool(x) for x in pareto_mask(pts * sign)]


def best_trial(sweep: SweepData) -> dict[str, Any] | None:
    """The best feasible, unpruned trial by the first objective; ties go to the next objectives in
    order (so the choice lies on the Pareto front), then to the lower trial number."""
    objectives = objective_columns(sweep)
    if not sweep.trials or not objectives:
        return None
    directions = objective_directions(sweep)
    signs = [1.0 if directions[o] == "minimize" else -1.0 for o in objectives]
    first = objectives[0]
    ok = [t for t in sweep.trials if t.get("feasible") and not t.get("pruned") and math.isfinite(_num(t.get(first)))]

    def rank(t: dict[str, Any]) -> tuple:
        values = [sg * _num(t.get(o)) for sg, o in zip(signs, objectives)]
        return (*[v if math.isfinite(v) else math.inf for v in values], t.get("trial", 0))

    return min(ok, key=rank) if ok else None


def throughput_latency_chart(sweep: SweepData) -> Chart | None:
    """Achieved throughput against p99 TTFT and TPOT, one line per combination of the other axes."""
    runs = [r for r in done_runs(sweep) if _num(r.get("requests_per_s")) == _num(r.get("requests_per_s"))]
    if not runs:
        return None
    go, make_subplots = plotly_modules()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT p99", "TPOT p99"), horizontal_spacing=0.1)
    load = load_axis(sweep)
    for gi, (label, group) in enumerate(_groups(runs, [a for a in varied_axes(sweep) if a != load], order_by=None)):
        group = sorted(group, key=lambda r: _num(r.get("requests_per_s")))
        for col, metric in ((1, "ttft_s__p99"), (2, "tpot_s__p99")):
            fig.add_trace(go.Scatter(
                x=[_num(r.get("requests_per_s")) for r in group], y=[1e3 * _num(r.get(metric)) for r in group],
                mode="lines+markers", name=label, legendgroup=label, showlegend=col == 1,
                line_color=COLORS[gi % len(COLORS)], text=[_run_label(r, sweep.axis_columns) for r in group],
                hovertemplate="%{text}<br>%{x:.3g} req/s, %{y:.4g} ms<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="throughput (finished req/s)")
    for col, metric in ((1, "ttft_s__p99"), (2, "tpot_s__p99")):
        fig.update_yaxes(title_text=f"{metric[:4].upper()} p99 (ms)", row=1, col=col,
                         type=axis_scale([_num(r.get(metric)) for r in runs]))
    title = "Throughput versus latency across runs"
    note = "Done runs; each point is one run" + (f", lines join runs differing in {axis_label(load)}." if load else ".")
    return Chart("chart-throughput-latency", title, style(fig, title), note)


def load_axis(sweep: SweepData) -> str | None:
    """The axis taken as the load: the first varied numeric ``workload.*`` axis, else the first varied numeric axis."""
    numeric = [a for a in varied_axes(sweep) if _numeric(done_runs(sweep), a)]
    return next((a for a in numeric if a.startswith("axis__workload__")), numeric[0] if numeric else None)


def axis_metrics_chart(sweep: SweepData, axis: str) -> Chart | None:
    """The metrics against one numeric axis, one line per combination of the other axes."""
    runs = done_runs(sweep)
    metrics = [m for m in SWEEP_METRICS if any(math.isfinite(_num(r.get(m[0]))) for r in runs)]
    if not runs or not metrics:
        return None
    go, make_subplots = plotly_modules()
    cols = 2
    rows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[m[1] for m in metrics], vertical_spacing=min(0.15, 0.3 / rows))
    others = [a for a in varied_axes(sweep) if a != axis]
    for gi, (label, group) in enumerate(_groups(runs, others, order_by=axis)):
        for i, (metric, name, scale) in enumerate(metrics):
            fig.add_trace(go.Scatter(
                x=[_num(r.get(axis)) for r in group], y=[scale * _num(r.get(metric)) for r in group],
                mode="lines+markers", name=label, legendgroup=label, showlegend=i == 0,
                line_color=COLORS[gi % len(COLORS)]), row=i // cols + 1, col=i % cols + 1)
            latency = metric.split("__")[0] in ("ttft_s", "tpot_s", "e2e_s")  # log only where overload stretches it
            fig.update_yaxes(title_text=name, row=i // cols + 1, col=i % cols + 1,
                             type=axis_scale([_num(r.get(metric)) for r in runs]) if latency else "linear")
            fig.update_xaxes(title_text=axis_label(axis), row=i // cols + 1, col=i % cols + 1)
    title = f"Metrics versus {axis_label(axis)}"
    key = "chart-axis-" + axis.removeprefix("axis__").replace("__", "-").replace("_", "-")
    return Chart(key, title, style(fig, title, height=300 * rows + 120))


def pareto_chart(sweep: SweepData, x: str, y: str, index: int = 0) -> Chart:
    """Trials in two objectives: infeasible, feasible, and the Pareto front joined."""
    go, _ = plotly_modules()
    trials = sweep.trials or []
    front = pareto_flags(sweep)
    fig = go.Figure()
    kinds = (("infeasible", lambda t, p: not t.get("feasible") and not t.get("pruned"), "#bab0ac", "x"),
             ("feasible", lambda t, p: bool(t.get("feasible")) and not p, "#4c78a8", "circle"),
             ("Pareto front", lambda t, p: p, "#e45756", "star"))
    for name, keep, color, symbol in kinds:
        chosen = [(t, p) for t, p in zip(trials, front) if keep(t, p)]
        chosen.sort(key=lambda tp: _num(tp[0].get(x)))
        fig.add_trace(go.Scatter(
            x=[_num(t.get(x)) for t, _ in chosen], y=[_num(t.get(y)) for t, _ in chosen], name=name,
            mode="lines+markers" if name == "Pareto front" else "markers",
            marker=dict(color=color, symbol=symbol, size=11 if name == "Pareto front" else 8),
            line=dict(color=color, shape="hv") if name == "Pareto front" else None,
            text=[f"trial {t.get('trial')} ({t.get('config_hash')})" for t, _ in chosen],
            hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    drawn = [t for t in trials if not t.get("pruned")]
    fig.update_xaxes(title_text=metric_label(x), type=axis_scale([_num(t.get(x)) for t in drawn]))
    fig.update_yaxes(title_text=metric_label(y), type=axis_scale([_num(t.get(y)) for t in drawn]))
    title = f"Pareto front: {metric_label(x)} vs {metric_label(y)}"
    return Chart(f"chart-pareto-{index}", title, style(fig, title), "Pruned trials (never simulated) are not drawn.")


def objective_trials_chart(sweep: SweepData, objective: str) -> Chart:
    """One objective per trial, with the best feasible value so far."""
    go, _ = plotly_modules()
    trials = sweep.trials or []
    sign = 1.0 if objective_directions(sweep)[objective] == "minimize" else -1.0
    fig = go.Figure()
    for name, keep, color in (("infeasible", lambda t: not t.get("feasible"), "#bab0ac"),
                              ("feasible", lambda t: bool(t.get("feasible")), "#4c78a8")):
        chosen = [t for t in trials if keep(t) and not t.get("pruned")]
        fig.add_trace(go.Scatter(x=[t.get("trial") for t in chosen], y=[_num(t.get(objective)) for t in chosen],
                                 mode="markers", name=name, marker_color=color))
    best, xs, ys = math.inf, [], []
    for t in trials:
        v = _num(t.get(objective))
        if t.get("feasible") and not t.get("pruned") and math.isfinite(v) and sign * v < best:
            best = sign * v
        if math.isfinite(best):
            xs.append(t.get("trial"))
            ys.append(sign * best)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="best feasible so far", line_shape="hv",
                             line_color="#e45756"))
    fig.update_xaxes(title_text="trial")
    fig.update_yaxes(title_text=metric_label(objective))
    title = f"Search: {metric_label(objective)} per trial"
    return Chart("chart-pareto-0", title, style(fig, title))


_UNITS = {"_usd_per_hr": "USD/h", "_usd": "USD", "_j": "J", "_s": "s", "_rps": "req/s", "_per_s": "1/s"}


def metric_label(column: str) -> str:
    """A flattened metric with its unit read off its name: ``ttft_s__p99`` -> ``ttft_s p99 (s)``."""
    base = column.split("__")[0]
    unit = next((u for suffix, u in _UNITS.items() if base.endswith(suffix)), "")
    text = column.replace("__", " ")
    return f"{text} ({unit})" if unit else text


# ---------------------------------------------------------------- plumbing
def _num(value: Any) -> float:
    """A cell as a float; NaN for NULL or text."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _numeric(runs: list[dict[str, Any]], column: str) -> bool:
    values = [r.get(column) for r in runs if r.get(column) is not None]
    return bool(values) and all(math.isfinite(_num(v)) for v in values)


def _cell(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


def _run_label(run: dict[str, Any], axes: Sequence[str]) -> str:
    return ", ".join(f"{axis_label(a)}={_cell(run.get(a))}" for a in axes) or str(run.get("config_hash"))


def _groups(runs: list[dict[str, Any]], axes: Sequence[str], order_by: str | None, limit: int = 10):
    """Runs grouped by their values of ``axes`` (label, runs sorted by ``order_by``); the
    ``limit`` largest groups, so many combinations do not flood the legend."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(_run_label(r, axes) if axes else "runs", []).append(r)
    chosen = sorted(groups.items(), key=lambda kv: -len(kv[1]))[:limit]
    chosen.sort(key=lambda kv: kv[0])
    if order_by is not None:
        chosen = [(k, sorted(v, key=lambda r: _num(r.get(order_by)))) for k, v in chosen]
    return chosen
