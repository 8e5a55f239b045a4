"""Core speed benchmark: the default scenario and a 1 M-request, 16-replica run.

Each case runs in a fresh subprocess so that its peak RSS is its own.  The
script prints one JSON line per case and a Markdown table at the end.

    python benchmarks/core_speed.py                       # both cases
    python benchmarks/core_speed.py --case default --repeat 3
    python benchmarks/core_speed.py --case million --requests 200000

Numbers are wall seconds on the machine that runs it; compare cases only
within one invocation (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _million_config(num_requests: int, num_replicas: int, rate_rps: float) -> dict:
    """Synthetic Poisson load with the Azure conversation length distribution."""
    return {
        "name": f"bench-{num_requests}-on-{num_replicas}",
        "seed": 1,
        "workload": {
            "kind": "synthetic",
            "num_requests": num_requests,
            "arrival": {"process": "poisson", "rate_rps": rate_rps},
            "prompt_tokens": {"dist": "empirical", "trace": "builtin:azure-2023-conv", "column": "prompt"},
            "output_tokens": {"dist": "empirical", "trace": "builtin:azure-2023-conv", "column": "output"},
        },
        "cluster": {"num_replicas": num_replicas, "model": "llama-3-8b", "hardware": "h100"},
        "router": {"policy": "least_outstanding"},
    }


def run_one(case: str, num_requests: int, num_replicas: int, rate_rps: float) -> dict:
    """Run one case in this process and measure it."""
    started = time.perf_counter()
    import servesim

    imported = time.perf_counter()
    config = None if case == "default" else _million_config(num_requests, num_replicas, rate_rps)
    result = servesim.simulate(config)
    finished = time.perf_counter()
    s = result.summary
    return {
        "case": case,
        "num_requests": s["num_requests"],
        "num_replicas": s["num_replicas"],
        "num_steps": s["num_steps"],
        "sim_time_s": round(s["sim_time_s"], 1),
        "import_s": round(imported - started, 3),
        "simulate_wall_s": round(finished - imported, 3),
        "total_wall_s": round(finished - started, 3),
        "wall_us_per_request": round(1e6 * (finished - imported) / max(1, s["num_requests"]), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "utilization": round(s["utilization"]["mean"], 3),
        "ttft_p99_s": s["ttft_s"]["p99"],
        "tpot_mean_s": s["tpot_s"]["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["default", "million", "all"], default="all")
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests of the 'million' case")
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--rate", type=float, default=80.0, help="arrival rate of the 'million' case (req/s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.case, args.requests, args.replicas, args.rate)))
        return
    cases = ["default", "million"] if args.case == "all" else [args.case]
    rows = []
    for case in cases:
        for _ in range(args.repeat):
            cmd = [sys.executable, __file__, "--one", "--case", case, "--requests", str(args.requests),
                   "--replicas", str(args.replicas), "--rate", str(args.rate)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(out, flush=True)
            rows.append(json.loads(out))
    print("\n| case | requests | replicas | steps | simulate wall s | total wall s | us/request | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['num_requests']:,} | {r['num_replicas']} | {r['num_steps']:,} | "
              f"{r['simulate_wall_s']} | {r['total_wall_s']} | {r['wall_us_per_request']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
