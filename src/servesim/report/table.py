"""A readable terminal rendering of a run summary (the dict from ``summarize``)."""

from __future__ import annotations

from io import StringIO
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# (summary key, row label) for the latency table, in display order.
_LATENCIES = (
    ("ttft_s", "TTFT"),
    ("tpot_s", "TPOT"),
    ("e2e_s", "E2E"),
    ("queue_delay_s", "Queue delay"),
    ("max_itl_s", "Max ITL"),
)
_LATENCY_STATS = ("mean", "p50", "p90", "p99", "max")


def render_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Print ``summary`` to ``console`` (a new stdout ``Console`` when None).

    Sections: run header, latency table (milliseconds), throughput, SLO
    (only when a target is set), busy time ("a step running X% of the time":
    ``summary["utilization"]``, not compute capacity), pools and model routing (a
    heterogeneous cluster), semi-PD splits, cost, energy (when known), the row power budget and
    fleet operations (when on).  Missing values
    print as ``-``.  Tolerates a summary lacking optional sections.
    """
    # At least 100 columns even when piped (rich assumes 80), so rows do not wrap.
    console = console if console is not None else Console(width=max(100, Console().width))
    console.print(_header(summary))
    console.print(_latency_table(summary))
    console.print(_throughput(summary))
    slo = summary.get("slo") or {}
    if any(v is not None for v in (slo.get("targets") or {}).values()):
        console.print(_slo(slo))
    console.print(_utilization(summary))
    if summary.get("pools"):
        console.print(_pools(summary))
    if summary.get("semi_pd"):
        console.print(_semi_pd(summary["semi_pd"]))
    console.print(_cost(summary.get("cost") or {}))
    if summary.get("energy_j") is not None:
        console.print(_energy(summary))
    if summary.get("power_budget"):
        console.print(_power_budget(summary["power_budget"]))
    if summary.get("fleet"):
        console.print(_fleet(summary["fleet"]))


def summary_text(summary: dict[str, Any], width: int = 100) -> str:
    """``render_summary`` output as plain text (no colour codes), ``width`` columns."""
    buf = StringIO()
    render_summary(summary, Console(file=buf, width=width, color_system=None, force_terminal=False))
    return buf.getvalue()


def _fmt(x: float | int | None, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    """``x * scale`` with ``digits`` decimals and a suffix; ``-`` for None."""
    if x is None:
        return "-"
    return f"{x * scale:,.{digits}f}{suffix}"


def _money(x: float | None) -> str:
    """Dollars; sub-dollar amounts keep 4 decimals so small runs do not show $0.00."""
    if x is None:
        return "-"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}"


def _pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal."""
    return _fmt(x, 1, 100.0, "%")


def _header(s: dict[str, Any]) -> str:
    horizon = s.get("horizon_s")
    sim = _fmt(s.get("sim_time_s"), 2, suffix=" s")
    if horizon is not None:
        sim += f" (horizon {_fmt(horizon, 2, suffix=' s')})"
    return (
        f"[bold]Run summary[/bold]\n"
        f"requests {s.get('num_requests', 0):,}  finished {s.get('num_finished', 0):,}  "
        f"rejected {s.get('num_rejected', 0):,}{_share(s.get('num_rejected'), s.get('num_requests'))}  "
        f"in flight {s.get('num_in_flight', 0):,}"
        + (f"  failed {s['num_failed']:,}" if s.get("num_failed") else "") + "\n"
        f"sim time {sim}  wall time {_fmt(s.get('wall_time_s'), 2, suffix=' s')}  "
        f"steps {s.get('num_steps', 0):,}  "
        f"speed {_fmt(s.get('simulated_requests_per_wall_s'), 1, suffix=' req/wall-s')}"
        + _reasons("rejected by reason", s.get("rejected_by_reason") or {}, REASON_MEANINGS)
        + _reasons("failed by reason", s.get("failed_by_reason") or {})
        + _reasons("workload rows skipped", s.get("workload_skipped") or {})
    )


# What each rejection reason (servesim.cluster.simulation.REJECT_REASONS) means, for the summary.
REASON_MEANINGS = {
    "exceeds_max_model_len": "prompt + output longer than the model's context, cluster.max_model_len",
    "exceeds_kv_capacity": "needs more KV cache than a replica has",
    "exceeds_token_budget": "prompt over scheduler.max_num_batched_tokens without chunked prefill",
    "fits_no_pool": "no one pool meets all of its limits",
}


def _share(part: int | None, whole: int | None) -> str:
    """`` (8.6%)`` of a non-zero part, else nothing."""
    if not part or not whole:
        return ""
    return " (<0.1%)" if part / whole < 0.0005 else f" ({part / whole:.1%})"


def _reasons(label: str, reasons: dict[str, int], meanings: dict[str, str] | None = None) -> str:
    if not reasons:
        return ""
    meanings = meanings or {}
    return f"\n{label}: " + ", ".join(
        f"{escape(k)} {v:,}" + (f" ({meanings[k]})" if k in meanings else "") for k, v in reasons.items()
    )


def _latency_table(s: dict[str, Any]) -> Table:
    table = Table(title="Latency (ms)", title_justify="left")
    table.add_column("metric")
    table.add_column("n", justify="right")
    for stat in _LATENCY_STATS:
        table.add_column(stat, justify="right")
    for key, label in _LATENCIES:
        d = s.get(key) or {}
        table.add_row(label, f"{d.get('count', 0):,}", *(_fmt(d.get(k), 2, 1e3) for k in _LATENCY_STATS))
    return table


def _throughput(s: dict[str, Any]) -> str:
    return (
        f"[bold]Throughput[/bold] over span {_fmt(s.get('span_s'), 2, suffix=' s')}: "
        f"{_fmt(s.get('requests_per_s'))} req/s  "
        f"{_fmt(s.get('input_tokens_per_s'), 1)} input tok/s  "
        f"{_fmt(s.get('output_tokens_per_s'), 1)} output tok/s"
    )


def _slo(slo: dict[str, Any]) -> str:
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}
    targets = ", ".join(
        f"{names.get(k, k)} <= {_fmt(v, 1, 1e3, ' ms')}"
        for k, v in (slo.get("targets") or {}).items()
        if v is not None
    )
    return (
        f"[bold]SLO[/bold] {targets}: attainment {_pct(slo.get('attainment'))} "
        f"({slo.get('num_met', 0):,} met)  goodput {_fmt(slo.get('goodput_rps'))} req/s"
    )


def _utilization(s: dict[str, Any]) -> str:
    u = s.get("utilization") or {}
    per = u.get("per_replica") or []
    # summary["utilization"] is the share of time a step was running (busy time over the active
    # window), not a share of compute capacity: a replica stepping one tiny batch back to back
    # reads 100%.  The label says so.
    line = f"[bold]Busy[/bold] a step running {_pct(u.get('mean'))} of the time"
    if len(per) > 1:
        # Many replicas would flood the terminal; the range is what matters.
        known = [x for x in per if x is not None]
        if known:
            line += f" (mean; min {_pct(min(known))}, max {_pct(max(known))} over {len(per)} replicas)"
    return (
        f"{line}  mean batch {_fmt(s.get('mean_running_batch'), 1)}  "
        f"peak queue {_fmt(s.get('peak_queue_len'), 0)}  peak KV {_pct(s.get('peak_kv_usage'))}  "
        f"preemptions {s.get('num_preemptions', 0):,}"
        + (
            f"  prefix hits {_pct(s.get('prefix_hit_rate'))} of prompt tokens"
            if s.get("prefix_cached_tokens")
            else ""
        )
    )


def _pools(s: dict[str, Any]) -> str:
    lines = [f"[bold]Pools[/bold] mean quality {_fmt(s.get('mean_quality'), 3)}  model cost {_money(s.get('model_cost_usd'))}"]
    lines += [
        f"  {name}: {p.get('replicas', 0)} replicas, {p.get('requests_finished', 0):,} finished, "
        f"quality {_fmt(p.get('mean_quality'), 3)}, {_money(p.get('price_usd_per_mtok'))} per 1M tokens"
        for name, p in s["pools"].items()
    ]
    return "\n".join(lines)


def _semi_pd(semi: dict[str, Any]) -> str:
    shares = ", ".join(_fmt(x) for x in semi.get("final_prefill_shares") or [])
    return f"[bold]semi-PD[/bold] prefill shares now {shares}  split changes {semi.get('split_changes', 0):,}"


def _energy(s: dict[str, Any]) -> str:
    return (f"[bold]Energy[/bold] {_fmt(s['energy_j'] / 3.6e6, 3)} kWh  {_fmt(s.get('energy_per_token_j'), 3)} J per output token  "
            f"mean {_fmt((s.get('power_w') or {}).get('mean'), 0)} W  idle capacity {_money(s.get('idle_cost_usd'))}")


def _power_budget(p: dict[str, Any]) -> str:
    return (f"[bold]Row power[/bold] {p['servers']} servers on a {_fmt(p['budget_w'] / 1e3, 1)} kW budget "
            f"({_fmt(p['oversubscription'], 2)}x at nameplate)  peak {_fmt(p.get('peak_share_of_budget'), 3)} of it  "
            f"capped {_fmt(p.get('capped_fraction'), 3)} of the time ({p['cap_events']} caps)  "
            f"over budget {_fmt(p['time_over_budget_s'], 1)} s")


def _cost(c: dict[str, Any]) -> str:
    line = f"[bold]Cost[/bold] {_fmt(c.get('gpu_hours'), 3)} GPU-h"
    if c.get("usd") is not None:
        line += (
            f"  {_money(c.get('usd'))} at {_money(c.get('price_usd_per_gpu_hr'))}/GPU-h  "
            f"{_money(c.get('usd_per_million_output_tokens'))} per 1M output tokens"
        )
    return line


def _cold_starts(count: int, total_s: float | None) -> str:
    """``cold starts 17, 110.6 s in all (mean 6.5 s)``; just the count when there were none."""
    if not count:
        return "cold starts 0"
    mean = None if total_s is None else total_s / count
    return f"cold starts {count}, {_fmt(total_s, 1)} s in all (mean {_fmt(mean, 1)} s)"


def _fleet(f: dict[str, Any]) -> str:
    line = "[bold]Fleet[/bold]"
    if "replicas" in f:
        r = f["replicas"]
        line += (f" {escape(str(f['policy']))}: mean {_fmt(r.get('mean_provisioned'))} replicas "
                 f"({_fmt(r.get('mean_gpus_provisioned'), 1)} GPUs)  "
                 f"scale-ups {f['scale_ups']}  {_cold_starts(f['cold_starts'], f['cold_start_s'])}  "
                 f"failures {f['failures']}  availability {_pct(f.get('availability'))}  "
                 f"retried {f['retried_requests']:,}  failed {f['failed_requests']:,}")
    if f.get("stragglers"):
        line += f"  stragglers {f['stragglers']}"
    if f.get("link_degradation_episodes"):
        line += f"  link degradations {f['link_degradation_episodes']}"
    return line
