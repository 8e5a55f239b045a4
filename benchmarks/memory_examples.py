"""Memory-hierarchy techniques against their baselines (issue 6), one example scenario each.

    python benchmarks/memory_examples.py            # prints Markdown tables

The results tables in docs/memory.md come from this script.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import servesim
from servesim.config import load_config
from servesim.core.rng import RandomStreams
from servesim.workload.builder import build_workload
from servesim.workload.request import Workload

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MOONCAKE = Path(servesim.__file__).parent / "data" / "traces" / "mooncake_conversation.jsonl"

# The SSD and DRAM tiers compared with the example's (Tutti-style) SSD tier.
SSD_CPU_DRIVEN = ("cluster.kv_tiers=[{name: ssd, capacity_gb: 1000, read_gb_per_s: 6.5, latency_s: 0.0001, "
                  "io: block, per_io_s: 0.0005, overlap: false}]")
DRAM = "cluster.kv_tiers=[{name: cpu, capacity_gb: 200, read_gb_per_s: 25, latency_s: 0.00001, io: bulk}]"
REMOTE = ("cluster.kv_tiers=[{name: remote, capacity_gb: 4000, read_gb_per_s: 12.5, latency_s: 0.001, io: bulk, "
          "per_io_s: 0.00005, overlap: true, shared: true}]")


def kv_tiers() -> list[str]:
    """GPU only, a CPU-driven SSD tier, Tutti's SSD tier, a DRAM tier, and an unlimited cache."""
    runs = [("GPU only (baseline)", ["cluster.kv_tiers=[]"]), ("+ SSD, CPU-driven block I/O (LMCache + GDS)", [SSD_CPU_DRIVEN]),
            ("+ SSD, GPU-driven bulk I/O, overlapped (Tutti)", []), ("+ DRAM", [DRAM]),
            ("+ a remote store shared by the replicas (RDMA)", [REMOTE]),
            ("unlimited cache (bound)", ["cluster.kv_tiers=[]", "cluster.prefix_cache_unlimited=true"])]
    rows = ["| run | TTFT mean | TTFT p50 | TTFT p90 | prefix-block hit rate (GPU + tier) | steps' load stall |",
            "|---|---|---|---|---|---|"]
    for label, overrides in runs:
        s = servesim.simulate(load_config(EXAMPLES / "kv-tiers-mooncake.yaml", overrides)).summary
        tiers = s["kv_cache"]["tiers"]
        split = " + ".join(f"{row['hit_rate']:.1%} {name}" for name, row in tiers.items())
        rows.append(f"| {label} | {s['ttft_s']['mean'] * 1e3:.0f} ms | {s['ttft_s']['p50'] * 1e3:.0f} ms | "
                    f"{s['ttft_s']['p90'] * 1e3:.0f} ms | {s['prefix_cache_hit_rate']:.1%} ({split}) | "
                    f"{s['kv_cache']['load_stall_s']:.1f} s |")
    return rows


def unlimited_hit_rate() -> list[str]:
    """The whole Mooncake conversation trace on one replica with an unlimited cache, against the
    trace's share of blocks seen earlier (0.366): requests spaced 30 s apart (each prompt computed
    before the next arrives), and at the trace's own times.  Qwen2.5-7B's context is raised to
    128K tokens (its YaRN setting) so that every request fits."""
    rows = [json.loads(line) for line in MOONCAKE.open()]
    seen, hits, total = set(), 0, 0
    for r in rows:
        hits += sum(1 for h in r["hash_ids"] if h in seen)
        total += len(r["hash_ids"])
        seen.update(r["hash_ids"])
    config = {"cluster": {"model": "qwen2.5-7b", "prefix_caching": True, "prefix_cache_unlimited": True},
              "catalog": {"models": {"qwen2.5-7b": {"max_context": 131072}}}}
    out = ["| requests | arrivals | trace's share of blocks seen earlier | simulated hit rate | wall |", "|---|---|---|---|---|"]
    for label, arrivals in (("30 s apart", np.arange(len(rows)) * 30.0),
                            ("the trace's own", np.array([r["timestamp"] / 1e3 for r in rows]))):
        workload = Workload.from_arrays(arrivals, [r["input_length"] for r in rows], [max(r["output_length"], 1) for r in rows],
                                        prefix_block_ids=[tuple(r["hash_ids"]) for r in rows], prefix_block_size=512)
        started = time.perf_counter()
        s = servesim.simulate(config, workload=workload).summary
        assert s["num_finished"] == len(rows)
        out.append(f"| all {len(rows):,} | {label} | {hits / total:.6f} | {s['prefix_cache_hit_rate']:.6f} | "
                   f"{time.perf_counter() - started:.1f} s |")
    return out


def kv_compression() -> list[str]:
    """Full KV vs a quarter-size KV cache in uniform pages vs Tangram's ragged pages (throughput)."""
    runs = [("full KV (baseline)", ["cluster.kv_compression=null"]),
            ("0.25 footprint, uniform pages", ["cluster.kv_compression.paging=uniform"]),
            ("0.25 footprint, ragged pages (Tangram)", [])]
    rows = ["| run | output tokens/s | requests/s | mean batch | TPOT p50 | E2E p50 | preemptions |", "|---|---|---|---|---|---|---|"]
    for label, overrides in runs:
        s = servesim.simulate(load_config(EXAMPLES / "kv-compression.yaml", overrides)).summary
        rows.append(f"| {label} | {s['output_tokens_per_s']:.0f} | {s['requests_per_s']:.2f} | {s['mean_running_batch']:.0f} | "
                    f"{s['tpot_s']['p50'] * 1e3:.0f} ms | {s['e2e_s']['p50']:.0f} s | {s['num_preemptions']} |")
    return rows


def expert_offload() -> list[str]:
    """Mixtral-8x7B on one H100 with 2-5 experts per layer cached, three miss policies, and a model
    of lower routing consistency (0.5, as with shared experts)."""
    from servesim.perf.expert_offload import cache_hit_rate

    rows = ["| experts cached per layer | routing consistency | hit rate | miss | TPOT p50 | TTFT p50 | KV tokens |",
            "|---|---|---|---|---|---|---|"]
    for cache in (2, 3, 4, 5):
        for consistency in (0.8, 0.5):
            for miss in ("load", "cpu", "auto"):
                result = servesim.simulate(load_config(EXAMPLES / "moe-expert-offload.yaml", [
                    f"cluster.expert_offload.gpu_experts_per_layer={cache}", f"cluster.expert_offload.miss={miss}",
                    f"cluster.expert_offload.routing_consistency={consistency}"]))
                s = result.summary
                rows.append(f"| {cache} | {consistency} | {cache_hit_rate(8, 2, cache, consistency):.3f} | {miss} | "
                            f"{s['tpot_s']['p50'] * 1e3:.0f} ms | {s['ttft_s']['p50'] * 1e3:.0f} ms | "
                            f"{result.deployment.memory.kv_capacity_tokens:,} |")
    return rows


def system_prompts() -> list[str]:
    """Prefix caching of shared system prompts: none, and 16 / 256 / 4,096 Zipf-popular prompts."""
    runs = [("no prefix caching (baseline)", ["cluster.prefix_caching=false", "router.policy=least_outstanding"])]
    runs += [(f"{n:,} system prompts", [f"workload.system_prompts.count={n}"]) for n in (16, 256, 4096)]
    rows = ["| run | prefix-block hit rate | prompt tokens computed | TTFT mean | TTFT p90 | SLO attainment (TTFT <= 0.5 s) |",
            "|---|---|---|---|---|---|"]
    for label, overrides in runs:
        result = servesim.simulate(load_config(EXAMPLES / "system-prompts.yaml", overrides))
        s, t = result.summary, result.requests
        computed = int(t.prompt_tokens.sum() - t.cached_tokens.sum())
        rate = s.get("prefix_cache_hit_rate")
        rows.append(f"| {label} | {'-' if rate is None else f'{rate:.1%}'} | {computed / 1e6:.2f} M | "
                    f"{s['ttft_s']['mean'] * 1e3:.0f} ms | {s['ttft_s']['p90'] * 1e3:.0f} ms | {s['slo']['attainment']:.1%} |")
    return rows


def rag_chunk_cache() -> list[str]:
    """Full recomputation vs prefix caching vs Cache-Craft's chunk cache on RAG prompts, at two rates."""
    runs = [("full recomputation (baseline)", ["cluster.chunk_cache=null"]),
            ("prefix caching", ["cluster.chunk_cache=null", "cluster.prefix_caching=true"]),
            ("prefix caching, prefix-aware routing", ["cluster.chunk_cache=null", "cluster.prefix_caching=true",
                                                      "router.policy=prefix_aware"]),
            ("chunk cache (Cache-Craft)", [])]
    rows = ["| rate | run | prompt tokens computed | redundant (vs each chunk once) | chunk / prefix-block hit rate | TTFT mean | "
            "E2E mean | SLO attainment |", "|---|---|---|---|---|---|---|---|"]
    for rate in (12, 20):
        for label, overrides in runs:
            result = servesim.simulate(load_config(EXAMPLES / "rag-chunk-cache.yaml", [*overrides, f"workload.arrival.rate_rps={rate}"]))
            s, t = result.summary, result.requests
            computed = int(t.prompt_tokens.sum() - t.cached_tokens.sum())
            # The least work: every question, and every distinct chunk once.
            workload = build_workload(result.config.workload, RandomStreams(result.config.seed))
            chunks = {c for ids in workload.chunk_ids for c in ids}
            per_prompt = result.config.workload.rag.chunks_per_request * workload.chunk_tokens
            least = int((workload.prompt_tokens - per_prompt).sum()) + len(chunks) * workload.chunk_tokens
            hit = s.get("chunk_cache", {}).get("hit_rate", s.get("prefix_cache_hit_rate"))
            rows.append(f"| {rate} req/s | {label} | {computed / 1e6:.2f} M | {(computed - least) / 1e6:.2f} M | "
                        f"{'-' if hit is None else f'{hit:.1%}'} | "
                        f"{s['ttft_s']['mean'] * 1e3:.0f} ms | {s['e2e_s']['mean']:.2f} s | {s['slo']['attainment']:.1%} |")
    return rows


def multi_lora() -> list[str]:
    """S-LoRA's unified pool vs fixed partitions of 2 and 8 GB, as the number of adapters grows."""
    runs = [("unified pool (S-LoRA)", ["cluster.lora.memory=unified"]),
            ("2 GB partition", ["cluster.lora.memory=partition", "cluster.lora.partition_gb=2"]),
            ("8 GB partition", ["cluster.lora.memory=partition", "cluster.lora.partition_gb=8"])]
    rows = ["| adapters | memory | TTFT mean | TTFT p90 | output tokens/s | mean batch | SLO attainment (TTFT <= 1 s) |",
            "|---|---|---|---|---|---|---|"]
    for n in (10, 100, 1000, 5000):
        for label, overrides in runs:
            s = servesim.simulate(load_config(EXAMPLES / "multi-lora.yaml", [f"workload.lora.num_adapters={n}", *overrides])).summary
            rows.append(f"| {n:,} | {label} | {s['ttft_s']['mean'] * 1e3:.0f} ms | {s['ttft_s']['p90'] * 1e3:.0f} ms | "
                        f"{s['output_tokens_per_s']:.0f} | {s['mean_running_batch']:.0f} | {s['slo']['attainment']:.1%} |")
    rows += ["", "| router (4 replicas, 5,000 adapters, 20 req/s) | adapter loads | bytes loaded | TTFT mean | TTFT p90 |",
             "|---|---|---|---|---|"]
    for policy in ("least_outstanding", "adapter_affinity"):
        s = servesim.simulate(load_config(EXAMPLES / "multi-lora.yaml", [
            "cluster.num_replicas=4", "workload.arrival.rate_rps=20", "workload.num_requests=4000",
            "workload.lora.num_adapters=5000", f"router.policy={policy}"])).summary
        rows.append(f"| {policy} | {s['lora']['loads']:,} | {s['lora']['bytes_loaded'] / 1e9:.1f} GB | "
                    f"{s['ttft_s']['mean'] * 1e3:.0f} ms | {s['ttft_s']['p90'] * 1e3:.0f} ms |")
    return rows


SHARED_CLAUDE_CODE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "agentic-claude-code" / "claude_code_traces_even.tar.gz"


def _program_row(label: str, s: dict) -> str:
    p = s["programs"]
    return (f"| {label} | {p['completed']} / {p['count']} | {p['jct_s']['mean']:.0f} s | {p['jct_s']['p50']:.0f} s | "
            f"{s['prefix_cache_hit_rate']:.1%} | {s['ttft_s']['mean']:.2f} s |")


def agent_pinning() -> list[str]:
    """Agent programs: plain LRU with FCFS (vLLM-like), LRU with program-level FCFS, Continuum's predicted
    TTL, and fixed TTLs; on the synthetic example and, when ../shared is beside the repository, on 40
    Claude Code conversations."""
    runs = [("LRU, request FCFS (baseline)", ["cluster.kv_pinning=null", "scheduler.policy=fcfs"]),
            ("LRU, program FCFS", ["cluster.kv_pinning=null"]),
            ("Continuum: predicted TTL, program FCFS", []),
            ("fixed TTL 5 s, program FCFS", ["cluster.kv_pinning.policy=fixed", "cluster.kv_pinning.ttl_s=5"]),
            ("fixed TTL 30 s, program FCFS", ["cluster.kv_pinning.policy=fixed", "cluster.kv_pinning.ttl_s=30"])]
    rows = ["| run | programs completed | JCT mean | JCT p50 | prefix-block hit rate | TTFT mean |", "|---|---|---|---|---|---|",
            "| *synthetic (examples/agent-continuum.yaml)* | | | | | |"]
    for label, overrides in runs:
        rows.append(_program_row(label, servesim.simulate(load_config(EXAMPLES / "agent-continuum.yaml", overrides)).summary))
    if SHARED_CLAUDE_CODE.exists():
        for rate, memory in ((0.05, 0.45), (0.1, 0.45), (0.1, 0.6)):
            rows.append(f"| *40 Claude Code conversations, {rate:g} programs/s, {memory:.0%} of GPU memory* | | | | | |")
            for label, overrides in runs:
                traces = [f"workload.source=claude_code", f"workload.path={SHARED_CLAUDE_CODE}", "workload.num_programs=40",
                          f"workload.arrival.rate_rps={rate}", "cluster.num_replicas=2", f"cluster.gpu_memory_utilization={memory}",
                          "router.policy=session_affinity", "catalog.models={qwen2.5-7b: {max_context: 131072}}"]
                config = load_config(EXAMPLES / "agent-continuum.yaml", [*traces, *overrides])
                rows.append(_program_row(label, servesim.simulate(config).summary))
    return rows


def main() -> None:
    for table in (kv_tiers(), unlimited_hit_rate(), kv_compression(), expert_offload(), system_prompts(), rag_chunk_cache(),
                  agent_pinning(), multi_lora()):
        print("\n".join(table))
        print()


if __name__ == "__main__":
    main()
