"""The report's charts of one run: plotly figures, each titled and with units on its axes.

Each builder takes a ``RunData`` and returns a ``Chart`` (figure, HTML id,
one-line note), or None when its data is absent (an optional file the run
did not write), so callers simply skip it.  What the charts show is computed
in ``servesim.report.series``; sweeps and searches are drawn by
``servesim.report.sweep_charts``.

Conventions: latencies are plotted over *finished* requests only (as the
summary's percentiles are); times are simulated seconds from the run's
start; per-replica samples are aggregated across replicas as the state of
each replica at the same instant (its last sample at or before it), summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.report.series import (
    axis_scale,
    bin_width_s,
    cdf_points,
    energy_split_j,
    fleet_timeseries,
    rate_per_bin,
    slo_shares,
    summed_over_replicas,
)
from servesim.report.sources import RunData, finished_mask

if TYPE_CHECKING:
    import plotly.graph_objects as go

_TEMPLATE = "plotly_white"
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
          "#bab0ac")


@dataclass(frozen=True)
class Chart:
    """One figure of the report: ``key`` is its HTML id, ``note`` one line on how it was computed."""

    key: str
    title: str
    figure: Any  # plotly.graph_objects.Figure
    note: str = ""


def run_charts(run: RunData) -> list[Chart]:
    """Every chart a run's files allow, in page order."""
    builders = (latency_cdfs, programs_chart, arrivals_chart, queue_chart, kv_chart, replicas_chart, power_chart,
                prefix_cache_chart, slo_chart, cost_energy_chart)
    return [c for c in (b(run) for b in builders) if c is not None]


def latency_cdfs(run: RunData) -> Chart | None:
    """TTFT, TPOT and E2E CDFs of finished requests, with the SLO targets marked."""
    if run.requests is None or not finished_mask(run.requests).any():
        return None  # nothing finished: no latency to draw
    go, make_subplots = plotly_modules()
    done = finished_mask(run.requests)
    targets = ((run.summary.get("slo") or {}).get("targets")) or {}
    panels = (("ttft_s", "TTFT", "time to first token (ms)", 1e3), ("tpot_s", "TPOT", "time per output token (ms)", 1e3),
              ("e2e_s", "E2E", "end-to-end latency (s)", 1.0))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07)
    for col, (key, name, axis, scale) in enumerate(panels, start=1):
        x, y = cdf_points(np.asarray(run.requests[key])[done])
        fig.add_trace(go.Scatter(x=x * scale, y=y, mode="lines", name=name, line_shape="hv", line_color=COLORS[col - 1],
                                 hovertemplate=f"{name} %{{x:.4g}}<br>share %{{y:.3f}}<extra></extra>"), row=1, col=col)
        if targets.get(key) is not None:
            # A trace, not a shape: it stays in place on a log axis.
            fig.add_trace(go.Scatter(x=[targets[key] * scale] * 2, y=[0, 1], mode="lines", name=f"{name} SLO",
                                     line=dict(dash="dash", color="firebrick"),
                                     hovertemplate="SLO target %{x:.4g}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=axis, type=axis_scale(x * scale), row=1, col=col)
    fig.update_yaxes(title_text="share of finished requests", range=[0, 1.02], row=1, col=1)
    title = f"Latency CDFs ({int(done.sum()):,} finished requests)"
    return Chart("chart-latency-cdf", title, style(fig, title, showlegend=False),
                 "Finished requests only; TPOT undefined for 1-token outputs; dashed: SLO targets; "
                 "an axis spanning two decades or more is logarithmic.")


def programs_chart(run: RunData) -> Chart | None:
    """The CDF of agent programs' job completion time (completed programs; agent workloads)."""
    programs = run.tables.get("programs")
    if programs is None or not np.asarray(programs["completed"], dtype=bool).any():
        return None
    go, _ = plotly_modules()
    done = np.asarray(programs["completed"], dtype=bool)
    x, y = cdf_points(np.asarray(programs["jct_s"], dtype=np.float64)[done])
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines", name="JCT", line_shape="hv"))
    fig.update_xaxes(title_text="job completion time (s)")
    fig.update_yaxes(title_text="share of completed programs", range=[0, 1.02])
    title = f"Agent programs: job completion time CDF ({int(done.sum()):,} of {len(done):,} completed)"
    return Chart("chart-programs", title, style(fig, title, showlegend=False),
                 "From programs.parquet: first call's arrival to last call's finish, completed programs only.")


def arrivals_chart(run: RunData) -> Chart | None:
    """Arrivals and completions per second over simulated time."""
    if run.requests is None or len(run.requests["arrival_s"]) == 0:
        return None
    go, _ = plotly_modules()
    arrival = np.asarray(run.requests["arrival_s"], dtype=np.float64)
    finish = np.asarray(run.requests["finish_s"], dtype=np.float64)[finished_mask(run.requests)]
    start = float(np.nanmin(arrival))
    end = float(np.nanmax(np.concatenate([arrival, finish]))) if len(finish) else float(np.nanmax(arrival))
    end = max(end, start + 1e-6)
    width = bin_width_s(end - start)
    fig = go.Figure()
    for name, times in (("arrivals", arrival), ("completions", finish)):
        x, rate = rate_per_bin(times, start, end, width)
        fig.add_trace(go.Scatter(x=x, y=rate, mode="lines", name=name, line_shape="hvh"))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="requests per second")
    title = f"Arrivals and completions (requests/s, {width:g} s bins)"
    return Chart("chart-arrivals", title, style(fig, title))


def queue_chart(run: RunData) -> Chart | None:
    """Waiting requests and the running batch, summed over replicas."""
    if run.timeseries is None or len(run.timeseries["time_s"]) == 0:
        return None
    go, make_subplots = plotly_modules()
    s = fleet_timeseries(run.timeseries, hold_s(run))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Queue length", "Running batch"))
    fig.add_trace(go.Scatter(x=s["time_s"], y=s["queue_len"], mode="lines", name="queue length", line_shape="hv"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=s["time_s"], y=s["running"], mode="lines", name="running batch", line_shape="hv"),
                  row=2, col=1)
    fig.update_yaxes(title_text="requests waiting", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="sequences running", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    n = len(np.unique(run.timeseries["replica"]))
    title = f"Queue and running batch (sum over {n} replica{'s' if n != 1 else ''})"
    return Chart("chart-queue", title, style(fig, title, height=520, showlegend=False),
                 "Each replica's last sample at each instant, summed over replicas; a replica that has not "
                 "sampled for two sampling periods has stopped stepping and counts as idle.")


def kv_chart(run: RunData) -> Chart | None:
    """KV-cache blocks in use: the fleet's share and the busiest replica's."""
    if run.timeseries is None or len(run.timeseries["time_s"]) == 0:
        return None
    go, _ = plotly_modules()
    s = fleet_timeseries(run.timeseries, hold_s(run))
    fig = go.Figure(go.Scatter(x=s["time_s"], y=100 * s["kv_usage"], mode="lines", name="fleet", line_shape="hv"))
    if len(np.unique(run.timeseries["replica"])) > 1:
        fig.add_trace(go.Scatter(x=s["time_s"], y=100 * s["kv_usage_max"], mode="lines", name="busiest replica",
                                 line_shape="hv", line_dash="dot"))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="KV blocks in use (%)", rangemode="tozero")
    title = "KV-cache usage (% of blocks)"
    return Chart("chart-kv", title, style(fig, title),
                 "Fleet: blocks in use over blocks in all, summed over replicas.")


def replicas_chart(run: RunData) -> Chart | None:
    """Replicas by state over time (fleet operations: autoscaling, failures)."""
    fleet = run.tables.get("fleet_timeseries")
    if fleet is None or len(fleet["time_s"]) == 0:
        return None
    go, _ = plotly_modules()
    fig = go.Figure()
    for state in ("active", "starting", "draining", "down"):
        if state in fleet:
            fig.add_trace(go.Scatter(x=fleet["time_s"], y=fleet[state], mode="lines", name=state, stackgroup="replicas",
                                     line_shape="hv"))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="replicas", rangemode="tozero")
    title = "Replicas by state (stacked)"
    return Chart("chart-replicas", title, style(fig, title), "From fleet_timeseries.parquet.")


def power_chart(run: RunData) -> Chart | None:
    """The row's power draw against its budget, and the capping level (row power budget)."""
    power = run.tables.get("power_timeseries")
    if power is None or len(power["time_s"]) == 0:
        return None
    go, make_subplots = plotly_modules()
    kw = np.asarray(power["row_power_w"], dtype=np.float64) / 1e3
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.08,
                        subplot_titles=("Row power", "Cap level"))
    fig.add_trace(go.Scatter(x=power["time_s"], y=kw, mode="lines", name="row power", line_shape="hv"), row=1, col=1)
    share = np.asarray(power["share_of_budget"], dtype=np.float64)
    if len(share) and share[0] > 0:
        fig.add_hline(y=kw[0] / share[0], line_dash="dash", line_color="firebrick", row=1, col=1,
                      annotation_text="budget")
    fig.add_trace(go.Scatter(x=power["time_s"], y=power["cap_level"], mode="lines", name="cap level", line_shape="hv"),
                  row=2, col=1)
    fig.update_yaxes(title_text="power (kW)", row=1, col=1)
    fig.update_yaxes(title_text="level (0 = none)", row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    title = "Row power (kW) and capping"
    return Chart("chart-power", title, style(fig, title, height=480, showlegend=False),
                 "From power_timeseries.parquet (the row power budget's readings).")


def prefix_cache_chart(run: RunData) -> Chart | None:
    """The prefix cache's cumulative hit rate over time (prefix caching)."""
    cache = run.tables.get("kvcache_timeseries")
    if cache is None or len(cache["time_s"]) == 0:
        return None
    go, _ = plotly_modules()
    s = summed_over_replicas(cache, ("looked_up_blocks", "hit_blocks"))
    rate = np.divide(s["hit_blocks"], s["looked_up_blocks"], out=np.zeros(len(s["time_s"])),
                     where=s["looked_up_blocks"] > 0)
    fig = go.Figure(go.Scatter(x=s["time_s"], y=100 * rate, mode="lines", name="hit rate", line_shape="hv"))
    fig.update_xaxes(title_text="simulated time (s)")
    fig.update_yaxes(title_text="prefix blocks found cached (%)", rangemode="tozero")
    title = "Prefix-cache hit rate (cumulative, %)"
    return Chart("chart-prefix-cache", title, style(fig, title), "From kvcache_timeseries.parquet.")


def slo_chart(run: RunData) -> Chart | None:
    """Share of all requests meeting each SLO target, and all of them; None without targets."""
    targets = ((run.summary.get("slo") or {}).get("targets")) or {}
    if run.requests is None or not any(v is not None for v in targets.values()):
        return None
    go, _ = plotly_modules()
    shares = slo_shares(run.requests, targets)
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E", "all": "all targets"}
    labels = [f"{names[k]} ≤ {targets[k] * 1e3:g} ms" if k != "all" else names[k] for k in shares]
    values = [100 * v for v in shares.values()]
    fig = go.Figure(go.Bar(x=labels, y=values, text=[f"{v:.2f}%" for v in values], textposition="outside",
                           marker_color=["#4c78a8"] * (len(values) - 1) + ["#54a24b"]))
    fig.update_yaxes(title_text="requests meeting the target (%)", range=[0, 110])
    fig.update_xaxes(title_text="SLO target")
    title = "SLO attainment (% of all requests)"
    return Chart("chart-slo", title, style(fig, title, showlegend=False),
                 "Rejected and unfinished requests count as misses, as in the summary.")


def cost_energy_chart(run: RunData) -> Chart | None:
    """The capacity cost split into busy and idle GPU time, and the energy split likewise."""
    s = run.summary
    cost, idle_cost, energy = s.get("cost_usd"), s.get("idle_cost_usd"), s.get("energy_j")
    if cost is None and energy is None:
        return None
    go, make_subplots = plotly_modules()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Cost (USD)", "Energy (kWh)"))
    if cost is not None:
        parts = {"busy GPU time": cost - idle_cost, "idle GPU time": idle_cost} if idle_cost is not None else {"total": cost}
        fig.add_trace(go.Bar(x=list(parts), y=list(parts.values()), name="cost",
                             text=[f"${v:,.4g}" for v in parts.values()], textposition="outside"), row=1, col=1)
    split = energy_split_j(s, run.config)
    if energy is not None:
        parts = {"in steps": split["busy"], "idle": split["idle"]} if split else {"total": energy}
        fig.add_trace(go.Bar(x=list(parts), y=[v / 3.6e6 for v in parts.values()], name="energy",
                             text=[f"{v / 3.6e6:,.4g}" for v in parts.values()], textposition="outside",
                             marker_color="#f58518"), row=1, col=2)
    fig.update_yaxes(title_text="USD", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="kWh", rangemode="tozero", row=1, col=2)
    title = "Cost and energy breakdown"
    return Chart("chart-cost-energy", title, style(fig, title, showlegend=False),
                 "Capacity cost over the span; idle = GPU time not running steps.")


def comparison_charts(sim: RunData, real: RunData, comparison: Any) -> list[Chart]:
    """``servesim report --compare``: the latency CDFs of both folders overlaid, and the requests
    in the system over time of both (``comparison``: a ``servesim.live.compare.Comparison``)."""
    return [c for c in (compare_cdfs(sim, real), in_system_chart(comparison)) if c is not None]


def compare_cdfs(sim: RunData, real: RunData) -> Chart | None:
    """TTFT, TPOT and E2E CDFs of finished requests: the simulation solid, the replay dashed."""
    sides = [(name, run) for name, run in (("sim", sim), ("real", real))
             if run.requests is not None and finished_mask(run.requests).any()]
    if not sides:
        return None
    go, make_subplots = plotly_modules()
    panels = (("ttft_s", "TTFT", "time to first token (ms)", 1e3),
              ("tpot_s", "TPOT", "time per output token (ms)", 1e3), ("e2e_s", "E2E", "end-to-end latency (s)", 1.0))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07)
    for col, (key, name, axis, scale) in enumerate(panels, start=1):
        xs = []
        for i, (side, run) in enumerate(sides):
            x, y = cdf_points(np.asarray(run.requests[key])[finished_mask(run.requests)])
            xs.append(x * scale)
            fig.add_trace(go.Scatter(x=x * scale, y=y, mode="lines", name=side, line_shape="hv", legendgroup=side,
                                     showlegend=col == 1,
                                     line=dict(color=COLORS[i], dash="solid" if i == 0 else "dash"),
                                     hovertemplate=f"{side} {name} %{{x:.4g}}<br>share %{{y:.3f}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text=axis, type=axis_scale(np.concatenate(xs)), row=1, col=col)
    fig.update_yaxes(title_text="share of finished requests", range=[0, 1.02], row=1, col=1)
    title = "Latency CDFs: simulation vs replay"
    return Chart("chart-compare-cdf", title, style(fig, title),
                 "Finished requests of each folder; simulation solid, replay dashed.")


def in_system_chart(comparison: Any) -> Chart | None:
    """Requests in the system (arrived, not finished) over time in both folders, on one grid."""
    if len(comparison.grid_s) == 0:
        return None
    go, _ = plotly_modules()
    fig = go.Figure()
    for i, (side, values) in enumerate((("sim", comparison.sim_in_system), ("real", comparison.real_in_system))):
        fig.add_trace(go.Scatter(x=comparison.grid_s, y=values, mode="lines", name=side, line_shape="hv",
                                 line=dict(color=COLORS[i], dash="solid" if i == 0 else "dash")))
    fig.update_xaxes(title_text="time from the start (s)")
    fig.update_yaxes(title_text="requests in system", rangemode="tozero")
    title = "Requests in system: simulation vs replay"
    return Chart("chart-compare-in-system", title, style(fig, title),
                 "Arrived and not yet finished, sampled on a common grid; failed and rejected requests left out.")


def hold_s(run: RunData) -> float:
    """How long a replica's time-series sample holds: two sampling periods (``engine.timeseries_interval_s``,
    1 s by default), after which a replica that has not sampled again has stopped stepping."""
    engine = (run.config or {}).get("engine") or {}
    return 2.0 * float(engine.get("timeseries_interval_s") or 1.0)


# ---------------------------------------------------------------- plumbing
def plotly_modules() -> tuple[Any, Any]:
    """plotly's modules, imported on first use (``servesim run`` never pays for them)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    return go, make_subplots


def style(fig: go.Figure, title: str, height: int = 420, showlegend: bool = True) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01), template=_TEMPLATE, height=height, showlegend=showlegend,
                      margin=dict(l=70, r=30, t=80, b=60),
                      # Below the x axis title at any height: about 85 px, as a share of the figure.
                      legend=dict(orientation="h", y=-85 / height, yanchor="top"))
    return fig
