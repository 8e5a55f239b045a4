"""Fleet operations against their baselines (issue 7); the tables in docs/operations.md come from here.

    python benchmarks/operations_examples.py
"""

from __future__ import annotations

from pathlib import Path

import servesim
from servesim.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def power_caps() -> list[str]:
    """The default scenario (one H100, 700 W TDP) under power caps: latency, energy and power."""
    rows = ["| cap per GPU | TTFT p90 | TPOT p90 | energy per output token | mean power | energy |", "|---|---|---|---|---|---|"]
    for cap in (None, 600, 500, 400, 300):
        s = servesim.simulate(load_config(EXAMPLES / "default.yaml", [f"cluster.power.cap_w={'null' if cap is None else cap}"])).summary
        rows.append(f"| {'none' if cap is None else f'{cap} W'} | {s['ttft_s']['p90'] * 1e3:.0f} ms | {s['tpot_s']['p90'] * 1e3:.1f} ms | "
                    f"{s['energy_per_token_j']:.3f} J | {s['power_w']['mean']:.0f} W | {s['energy_j'] / 3.6e6:.3f} kWh |")
    return rows


def _row(servers: int, policy: str, extra: tuple[str, ...] = ()) -> dict:
    """examples/polca-row-budget.yaml with ``servers`` servers (8 GPUs each) under the same budget (10
    servers at nameplate) and the same load per GPU (3 requests/s, 600 s), under ``policy``."""
    gpus = 8 * servers
    return servesim.simulate(load_config(EXAMPLES / "polca-row-budget.yaml", [
        f"cluster.num_replicas={gpus}", f"workload.arrival.rate_rps={3.0 * gpus}",
        f"workload.num_requests={int(3.0 * gpus * 600)}", f"cluster.power.row.policy={policy}", *extra])).summary


def polca() -> list[str]:
    """POLCA: 10..15 servers under a budget sized for 10 at nameplate, uncapped ('monitor') and capped."""
    rows = ["| servers | uncapped: peak draw | uncapped: time over budget | POLCA: TTFT p50 / p99 | TPOT p50 / p99 | "
            "peak draw | time capped | time over budget | energy per output token |", "|---|---|---|---|---|---|---|---|---|"]
    for servers in (10, 11, 12, 13, 14, 15):
        free, capped = _row(servers, "monitor"), _row(servers, "polca")
        u, c = free["power_budget"], capped["power_budget"]
        rows.append(
            f"| {servers} ({servers / 10:.1f}x) | {u['peak_share_of_budget']:.0%} | {u['time_over_budget_s']:.0f} s "
            f"({u['over_budget_fraction']:.1%}) | {capped['ttft_s']['p50'] * 1e3:.0f} / {capped['ttft_s']['p99'] * 1e3:.0f} ms | "
            f"{capped['tpot_s']['p50'] * 1e3:.1f} / {capped['tpot_s']['p99'] * 1e3:.1f} ms | {c['peak_share_of_budget']:.0%} | "
            f"{c['capped_fraction']:.0%} ({c['cap_events']} caps) | {c['time_over_budget_s']:.0f} s | "
            f"{capped['energy_per_token_j']:.3f} J |")
        if servers == 10:
            rows.append(f"| 10, uncapped (baseline) | | | {free['ttft_s']['p50'] * 1e3:.0f} / {free['ttft_s']['p99'] * 1e3:.0f} ms | "
                        f"{free['tpot_s']['p50'] * 1e3:.1f} / {free['tpot_s']['p99'] * 1e3:.1f} ms | | | | "
                        f"{free['energy_per_token_j']:.3f} J |")
    return rows


def polca_variants() -> list[str]:
    """POLCA's controller settings at 1.3x, and more servers than the main table (all under POLCA)."""
    rows = ["| servers | variant | TTFT p50 / p99 | TPOT p99 | peak draw | time capped | time at the hard cap | time over budget |",
            "|---|---|---|---|---|---|---|---|"]
    variants = [
        (13, "reading every 0.5 s", ("cluster.power.row.interval_s=0.5",)),
        (13, "cap above 85%, uncap below 75%", ("cluster.power.row.cap_threshold=0.85", "cluster.power.row.uncap_threshold=0.75")),
        (13, "1.5 kW per server besides the GPUs", ("cluster.power.row.server_other_w=1500",)),
        (16, "as in the example", ()), (17, "as in the example", ()), (18, "as in the example", ()),
    ]
    for servers, name, extra in variants:
        s = _row(servers, "polca", extra)
        c = s["power_budget"]
        rows.append(f"| {servers} ({servers / 10:.1f}x) | {name} | {s['ttft_s']['p50'] * 1e3:.0f} / {s['ttft_s']['p99'] * 1e3:.0f} ms | "
                    f"{s['tpot_s']['p99'] * 1e3:.1f} ms | {c['peak_share_of_budget']:.1%} | {c['capped_fraction']:.0%} | "
                    f"{c['time_hard_capped_s'] / (c['time_capped_s'] or 1.0) * c['capped_fraction']:.0%} | {c['time_over_budget_s']:.1f} s |")
    return rows


def main() -> None:
    print("\n".join(power_caps()))
    print()
    print("\n".join(polca()))
    print()
    print("\n".join(polca_variants()))


if __name__ == "__main__":
    main()
