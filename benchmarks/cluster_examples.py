"""Cluster techniques against their baselines (issue 5), one example scenario each.

    python benchmarks/cluster_examples.py            # prints a Markdown table

Each row runs an example from ``examples/`` as written or with the
baseline's overrides, and reports what the technique is meant to move.  The
results table in docs/cluster.md comes from this script.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

import servesim
from servesim.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _rows(technique: str, example: str, runs: list[tuple[str, list[str]]], describe: Callable) -> list[str]:
    """One table row per run: ``describe(config, result)`` says what it measured."""
    rows = []
    for label, overrides in runs:
        config = load_config(EXAMPLES / example, overrides)
        rows.append(f"| {technique} | {label} | {describe(config, servesim.simulate(config))} |")
    return rows


def _ttft_ms(result, mask) -> tuple[float, float]:
    t = result.requests
    ttft = ((t.first_token_s - t.arrival_s) * 1e3)[mask]
    return float(np.nanmean(ttft)), float(np.nanpercentile(ttft, 90))


def _goodput(config, result) -> str:
    s = result.summary
    return (f"goodput {s['slo']['goodput_rps']:.2f} req/s (SLO attainment {s['slo']['attainment']:.1%}); "
            f"TTFT p90 {s['ttft_s']['p90'] * 1e3:.0f} ms, TPOT p90 {s['tpot_s']['p90'] * 1e3:.1f} ms")


def laps() -> list[str]:
    """LAPS vs least outstanding: TTFT of short prompts (<= the threshold) on mixed lengths."""

    def short_ttft(config, result) -> str:
        short = result.requests.prompt_tokens <= config.router.laps_threshold_tokens
        s_mean, s_p90 = _ttft_ms(result, short)
        l_mean, _ = _ttft_ms(result, ~short)
        return (f"short-prompt TTFT mean {s_mean:.1f} ms, p90 {s_p90:.1f} ms; long-prompt TTFT mean "
                f"{l_mean:.1f} ms; short prompts {short.mean():.0%}")

    runs = [("least_outstanding (baseline)", ["router.policy=least_outstanding"]), ("laps", [])]
    return _rows("LAPS", "laps-mixed-lengths.yaml", runs, short_ttft)


def laps_one_instance() -> list[str]:
    """LAPS's dual queue on one replica (2,048-token iterations, 16 req/s): FCFS vs length-aware admission."""

    def short_ttft(config, result) -> str:
        short = result.requests.prompt_tokens <= config.scheduler.laps_threshold_tokens
        s_mean, s_p90 = _ttft_ms(result, short)
        l_mean, _ = _ttft_ms(result, ~short)
        return f"short-prompt TTFT mean {s_mean:.1f} ms, p90 {s_p90:.1f} ms; long-prompt TTFT mean {l_mean:.1f} ms"

    base = ["cluster.num_replicas=1", "router.policy=least_outstanding", "workload.arrival.rate_rps=16",
            "workload.num_requests=3000", "scheduler.max_num_batched_tokens=2048"]
    runs = [("1 replica, fcfs queue (baseline)", [*base, "scheduler.policy=fcfs"]),
            ("1 replica, laps queue", [*base, "scheduler.policy=laps"])]
    return _rows("LAPS (one instance)", "laps-mixed-lengths.yaml", runs, short_ttft)


def laps_prefill_pool() -> list[str]:
    """LAPS where it was built: routing over a disaggregated prefill pool (2P2D, 40 req/s), with and
    without CUDA graphs for short pure-prefill steps, and the batching window on top."""

    def short_ttft(config, result) -> str:
        short = result.requests.prompt_tokens <= config.router.laps_threshold_tokens
        s_mean, s_p90 = _ttft_ms(result, short)
        l_mean, _ = _ttft_ms(result, ~short)
        return f"short-prompt TTFT mean {s_mean:.1f} ms, p90 {s_p90:.1f} ms; long-prompt TTFT mean {l_mean:.1f} ms"

    base = ["cluster.disaggregation={prefill_replicas: 2, decode_replicas: 2, link: {bandwidth_gbps: 3600}}",
            "workload.arrival.rate_rps=40"]
    graphs = "cluster.prefill_cuda_graph_tokens=1024"
    runs = [("2P2D, least_outstanding (baseline)", [*base, "router.policy=least_outstanding"]),
            ("2P2D, laps", base),
            ("2P2D, least_outstanding, prefill graphs", [*base, "router.policy=least_outstanding", graphs]),
            ("2P2D, laps, prefill graphs", [*base, graphs])]
    runs += [(f"2P2D, laps, prefill graphs, {w * 1e3:g} ms window", [*base, graphs, f"router.laps_batch_window_s={w}"])
             for w in (0.002, 0.005)]
    return _rows("LAPS (prefill pool)", "laps-mixed-lengths.yaml", runs, short_ttft)


def disaggregation() -> list[str]:
    """2 prefill + 2 decode replicas vs 4 colocated: goodput under tight TTFT and TPOT targets."""
    runs = [(f"{label}, {rate:g} req/s", [*overrides, f"workload.arrival.rate_rps={rate}"])
            for label, overrides in (("4 colocated (baseline)", ["cluster.disaggregation=null"]),
                                     ("2 prefill + 2 decode", []))
            for rate in (8.0, 10.0, 12.0)]
    return _rows("P/D disaggregation", "pd-disaggregation.yaml", runs, _goodput)


def pd_ratio() -> list[str]:
    """The best prefill:decode split depends on the workload (P/D-Serve's case for tuning it)."""
    workloads = {
        "long prompts, 10 req/s": [],
        "short prompts, long outputs, 14 req/s": [
            "workload.prompt_tokens={dist: uniform, low: 500, high: 1500}",
            "workload.output_tokens={dist: uniform, low: 300, high: 900}",
            "workload.arrival.rate_rps=14",
        ],
    }
    runs = [(f"{name}: {p}P{d}D", [*overrides, f"cluster.disaggregation.prefill_replicas={p}",
                                   f"cluster.disaggregation.decode_replicas={d}"])
            for name, overrides in workloads.items() for p, d in ((1, 3), (2, 2), (3, 1))]
    return _rows("P/D ratio", "pd-disaggregation.yaml", runs, _goodput)


def pd_controller() -> list[str]:
    """The run-time P/D controller started from each split of the long-prompt example."""

    def with_switches(config, result) -> str:
        return f"{_goodput(config, result)}; {result.summary['role_switches']} role switch(es)"

    runs = [(f"{p}P{d}D{' + controller' if on else ''}",
             [f"cluster.disaggregation.prefill_replicas={p}", f"cluster.disaggregation.decode_replicas={d}",
              *(["cluster.disaggregation.controller={}"] if on else [])])
            for p, d in ((1, 3), (2, 2), (3, 1)) for on in (False, True)]
    return _rows("P/D controller", "pd-disaggregation.yaml", runs, with_switches)


def prefill_offload() -> list[str]:
    """Remote prefill (PrfaaS) vs local only, as the cross-datacenter link's bandwidth falls."""
    runs = [("local only (baseline)", ["cluster.prefill_offload=null"])]
    runs += [(f"offload over {bw:g} Gbit/s", [f"cluster.prefill_offload.link.bandwidth_gbps={bw}"])
             for bw in (400, 100, 25, 10, 5, 2, 1, 0.5)]
    return _rows("PrfaaS", "prefill-offload.yaml", runs, _goodput)


def prefill_offload_remote_gpus() -> list[str]:
    """The remote prefill cluster on other GPUs (PrfaaS's compute-dense prefill cluster): TTFT and cost."""

    def with_cost(config, result) -> str:
        cost = result.summary["cost"]
        return f"{_goodput(config, result)}; {cost['usd_per_million_output_tokens']:.2f} $ per million output tokens"

    runs = [(f"remote on {gpu}, {bw:g} Gbit/s", [f"cluster.prefill_offload.remote_hardware={gpu}",
                                                   f"cluster.prefill_offload.link.bandwidth_gbps={bw}"])
            for gpu in ("h100", "b200", "a100") for bw in (100, 10)]
    return _rows("PrfaaS (remote GPUs)", "prefill-offload.yaml", runs, with_cost)


def prefill_offload_hybrid() -> list[str]:
    """The same sweep for a hybrid-attention variant of the model (4 of its 32 layers keep a KV
    cache, an eighth of the bytes per token): the offload keeps paying on slower links."""
    hybrid = ["catalog.models.llama-3-8b.kv_cache_layers=4"]
    runs = [("hybrid, local only (baseline)", [*hybrid, "cluster.prefill_offload=null"])]
    runs += [(f"hybrid, offload over {bw:g} Gbit/s", [*hybrid, f"cluster.prefill_offload.link.bandwidth_gbps={bw}"])
             for bw in (100, 10, 5, 2, 1, 0.5)]
    return _rows("PrfaaS (hybrid attention)", "prefill-offload.yaml", runs, _goodput)


def semi_pd() -> list[str]:
    """semi-PD (SM split, shared KV cache) vs colocated chunked prefill and 2P2D over NVLink on the
    same four GPUs, across load; then the controller recovering from a bad initial split."""

    def latency(config, result) -> str:
        s = result.summary
        changes = s.get("semi_pd", {}).get("split_changes")
        return (f"E2E mean {s['e2e_s']['mean']:.2f} s; " + _goodput(config, result)
                + ("" if changes is None else f"; {changes} split change(s), final prefill shares "
                   f"{', '.join(f'{x:g}' for x in s['semi_pd']['final_prefill_shares'])}"))

    pd = ["cluster.semi_pd=null",
          "cluster.disaggregation={prefill_replicas: 2, decode_replicas: 2, link: {bandwidth_gbps: 3600}}"]
    runs = [(f"{label}, {rate:g} req/s", [*overrides, f"workload.arrival.rate_rps={rate}"])
            for rate in (12.0, 20.0, 24.0, 28.0)
            for label, overrides in (("4 colocated (baseline)", ["cluster.semi_pd=null"]), ("2P2D over NVLink", pd),
                                     ("semi-PD + controller", []))]
    runs += [(f"split {share:g} {'+ controller' if ctl else 'fixed'}, 24 req/s",
              [f"cluster.semi_pd.prefill_share={share}", "workload.arrival.rate_rps=24",
               *([] if ctl else ["cluster.semi_pd.controller=null"])])
             for share in (0.25, 0.5, 0.8) for ctl in (False, True)]
    return _rows("semi-PD", "semi-pd.yaml", runs, latency)


def prefix_aware() -> list[str]:
    """Prefix-cache-aware routing vs round robin and least outstanding on the Mooncake trace: hit rate."""

    def hit_rate(config, result) -> str:
        s = result.summary
        return (f"prefix hit rate {s['prefix_hit_rate']:.1%} of scheduled prompt tokens; "
                f"TTFT mean {s['ttft_s']['mean'] * 1e3:.0f} ms, p90 {s['ttft_s']['p90'] * 1e3:.0f} ms")

    runs = [("round_robin (baseline)", ["router.policy=round_robin"]),
            ("least_outstanding", ["router.policy=least_outstanding"]), ("prefix_aware", [])]
    return _rows("prefix-aware routing", "prefix-aware-mooncake.yaml", runs, hit_rate)


def route_balance_frontier() -> list[str]:
    """RouteBalance vs quality-threshold and cheapest-first routing on a three-pool cluster at 36 req/s:
    each policy's knob swept, one row per run (mean quality, model cost, E2E latency), and for each
    baseline run the fastest RouteBalance run that matches it on quality (within 0.005) and cost
    (within 3%), with the ratio of their median latencies."""
    runs = [("route_balance", [f"router.latency_weight={lw}", f"router.cost_weight={cw}"])
            for cw in (0.0, 0.1, 0.2, 0.5, 1.0, 2.0) for lw in (0.003, 0.01, 0.03, 0.05, 0.1, 0.3)]
    runs += [("quality_threshold", [f"router.min_quality={q}"]) for q in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)]
    runs += [("cheapest_first", [f"router.spill_outstanding={n}"]) for n in (8, 16, 32, 48, 64)]
    points = []
    for policy, knobs in runs:
        s = servesim.simulate(load_config(EXAMPLES / "route-balance.yaml", [f"router.policy={policy}", *knobs])).summary
        knob = ", ".join(k.removeprefix("router.") for k in knobs)
        points.append((policy, knob, s["mean_quality"], s["model_cost_per_request_usd"] * 1e3, s["e2e_s"]["p50"],
                       s["e2e_s"]["p90"]))
    rows = ["| policy | knob | mean quality | model cost per request (m$) | E2E p50 (s) | E2E p90 (s) | fastest route_balance run at its quality and cost |",
            "|---|---|---|---|---|---|---|"]
    balanced = [p for p in points if p[0] == "route_balance"]
    for policy, knob, quality, cost, p50, p90 in sorted(points, key=lambda p: (p[0], p[2])):
        verdict = ""
        if policy != "route_balance":
            matched = [b for b in balanced if b[2] >= quality - 0.005 and b[3] <= cost * 1.03]
            if matched:
                b = min(matched, key=lambda b: b[4])
                verdict = f"{b[1]}: quality {b[2]:.3f}, {b[3]:.3f} m$, p50 {b[4]:.2f} s ({p50 / b[4]:.2f}x faster)"
            else:
                verdict = "none"
        rows.append(f"| {policy} | {knob} | {quality:.3f} | {cost:.3f} | {p50:.2f} | {p90:.2f} | {verdict} |")
    return rows


def main() -> None:
    print("| technique | run | result |")
    print("|---|---|---|")
    for row in [*laps(), *laps_one_instance(), *laps_prefill_pool(), *disaggregation(), *pd_ratio(), *pd_controller(), *semi_pd(), *prefill_offload(), *prefill_offload_remote_gpus(), *prefill_offload_hybrid(), *prefix_aware()]:
        print(row)
    print()
    for row in route_balance_frontier():
        print(row)


if __name__ == "__main__":
    main()
