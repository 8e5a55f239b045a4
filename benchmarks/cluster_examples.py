"""Cluster techniques against their baselines (issue 5), one example scenario each.

    python benchmarks/cluster_examples.py            # prints a Markdown table

Each row runs an example from ``examples/`` as written and again with the
baseline's overrides, and reports what the technique is meant to move.  The
results table in docs/cluster.md comes from this script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import servesim
from servesim.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _ttft_ms(result, mask=None) -> tuple[float, float]:
    t = result.requests
    ttft = (t.first_token_s - t.arrival_s) * 1e3
    if mask is not None:
        ttft = ttft[mask]
    return float(np.nanmean(ttft)), float(np.nanpercentile(ttft, 90))


def laps() -> list[str]:
    """LAPS vs least outstanding: TTFT of short prompts (<= the threshold) on mixed lengths."""
    path = EXAMPLES / "laps-mixed-lengths.yaml"
    rows = []
    for label, overrides in (("least_outstanding (baseline)", ["router.policy=least_outstanding"]), ("laps", [])):
        cfg = load_config(path, overrides)
        result = servesim.simulate(cfg)
        short = result.requests.prompt_tokens <= cfg.router.laps_threshold_tokens
        s_mean, s_p90 = _ttft_ms(result, short)
        l_mean, _ = _ttft_ms(result, ~short)
        rows.append(
            f"| LAPS | {label} | short-prompt TTFT mean {s_mean:.1f} ms, p90 {s_p90:.1f} ms; "
            f"long-prompt TTFT mean {l_mean:.1f} ms; short prompts {short.mean():.0%} |"
        )
    return rows


def disaggregation() -> list[str]:
    """2 prefill + 2 decode replicas vs 4 colocated: goodput under tight TTFT and TPOT targets."""
    path = EXAMPLES / "pd-disaggregation.yaml"
    rows = []
    for label, overrides in (("4 colocated (baseline)", ["cluster.disaggregation=null"]), ("2 prefill + 2 decode", [])):
        for rate in (8.0, 10.0, 12.0):
            result = servesim.simulate(load_config(path, [*overrides, f"workload.arrival.rate_rps={rate}"]))
            s = result.summary
            rows.append(
                f"| P/D disaggregation | {label}, {rate:g} req/s | goodput {s['slo']['goodput_rps']:.2f} req/s "
                f"(SLO attainment {s['slo']['attainment']:.1%}); TTFT p90 {s['ttft_s']['p90'] * 1e3:.0f} ms, "
                f"TPOT p90 {s['tpot_s']['p90'] * 1e3:.1f} ms |"
            )
    return rows


def pd_ratio() -> list[str]:
    """The best prefill:decode split depends on the workload (P/D-Serve's case for tuning it)."""
    path = EXAMPLES / "pd-disaggregation.yaml"
    workloads = {
        "long prompts, 10 req/s": [],
        "short prompts, long outputs, 14 req/s": [
            "workload.prompt_tokens={dist: uniform, low: 500, high: 1500}",
            "workload.output_tokens={dist: uniform, low: 300, high: 900}",
            "workload.arrival.rate_rps=14",
        ],
    }
    rows = []
    for name, overrides in workloads.items():
        for p, d in ((1, 3), (2, 2), (3, 1)):
            split = [f"cluster.disaggregation.prefill_replicas={p}", f"cluster.disaggregation.decode_replicas={d}"]
            s = servesim.simulate(load_config(path, [*overrides, *split])).summary
            rows.append(
                f"| P/D ratio | {name}: {p}P{d}D | goodput {s['slo']['goodput_rps']:.2f} req/s; TTFT p90 "
                f"{s['ttft_s']['p90'] * 1e3:.0f} ms, TPOT p90 {s['tpot_s']['p90'] * 1e3:.1f} ms |"
            )
    return rows


def prefill_offload() -> list[str]:
    """Remote prefill (PrfaaS) vs local only, as the cross-datacenter link's bandwidth falls."""
    path = EXAMPLES / "prefill-offload.yaml"
    rows = []
    runs = [("local only (baseline)", ["cluster.prefill_offload=null"])]
    runs += [(f"offload over {bw:g} Gbit/s", [f"cluster.prefill_offload.link.bandwidth_gbps={bw}"])
             for bw in (400, 100, 25, 10, 5, 2, 1, 0.5)]
    for label, overrides in runs:
        result = servesim.simulate(load_config(path, overrides))
        s = result.summary
        rows.append(
            f"| PrfaaS | {label} | goodput {s['slo']['goodput_rps']:.2f} req/s (SLO attainment "
            f"{s['slo']['attainment']:.1%}); TTFT p90 {s['ttft_s']['p90'] * 1e3:.0f} ms, "
            f"TPOT p90 {s['tpot_s']['p90'] * 1e3:.1f} ms |"
        )
    return rows


def prefix_aware() -> list[str]:
    """Prefix-cache-aware routing vs round robin and least outstanding on the Mooncake trace: hit rate."""
    path = EXAMPLES / "prefix-aware-mooncake.yaml"
    rows = []
    for label, overrides in (("round_robin (baseline)", ["router.policy=round_robin"]),
                             ("least_outstanding", ["router.policy=least_outstanding"]),
                             ("prefix_aware", [])):
        s = servesim.simulate(load_config(path, overrides)).summary
        rows.append(
            f"| prefix-aware routing | {label} | prefix hit rate {s['prefix_hit_rate']:.1%} of scheduled prompt "
            f"tokens; TTFT mean {s['ttft_s']['mean'] * 1e3:.0f} ms, p90 {s['ttft_s']['p90'] * 1e3:.0f} ms |"
        )
    return rows


def main() -> None:
    print("| technique | run | result |")
    print("|---|---|---|")
    for row in [*laps(), *disaggregation(), *pd_ratio(), *prefill_offload(), *prefix_aware()]:
        print(row)


if __name__ == "__main__":
    main()
