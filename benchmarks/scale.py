"""Scaling benchmark: wall time and memory from 100 k to 10 M requests.

Workload, shaped like BurstGPT: Gamma inter-arrivals (coefficient of
variation ``--cv``, default 2.0, i.e. burstier than Poisson), prompt and
output lengths resampled from the Azure 2023 conversation trace shipped with
servesim; Llama-3-8B on H100, ``--replicas`` replicas (default 64) behind the
least-outstanding router, at about ``--load`` (default 0.8) of the fleet's
capacity.

    python benchmarks/scale.py                                # 100k, 1M, 10M requests
    python benchmarks/scale.py --sizes 100000,1000000 --json  # one JSON line per size
    python benchmarks/scale.py --sizes 2000,4000 --replicas 4 # smoke test
    python benchmarks/scale.py --capacity 35.2                # skip the capacity run

Steps:

1. Capacity: one replica simulated overloaded (``--capacity-requests``,
   default 4000, arriving at ``--capacity-rate``, default 1000 req/s); its
   summary's ``requests_per_s`` is the requests/s one replica sustains.  The
   arrival rate of every size is then load x replicas x capacity.
2. Each size runs in its own fresh subprocess so that its peak RSS
   (``getrusage(RUSAGE_SELF).ru_maxrss`` inside the child) is its own.
   Reported: import and simulate wall seconds (simulate = workload
   generation, simulation, books check, summary), peak RSS, simulate wall
   microseconds per request, simulated requests per wall second, and that
   per-request wall time over the smallest size's.  The flatness check
   passes when that ratio stays within ``--max-ratio`` (default 1.5) for
   every size, i.e. cost per request does not grow with the run's length.

Numbers are wall seconds on the machine that runs it; compare sizes only
within one invocation (these machines are noisy).  Sizes run smallest first
(the ratio's base).  At tiny sizes the per-request time is dominated by fixed
set-up costs (loading the length trace, building the deployment), so the
flatness check means something from about 100 k requests up.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DEFAULT_SIZES = "100000,1000000,10000000"


def scenario(num_requests: int, num_replicas: int, rate_rps: float, cv: float, seed: int) -> dict:
    """Gamma-bursty arrivals, Azure-conversation lengths, Llama-3-8B on H100."""
    return {
        "name": f"scale-{num_requests}-on-{num_replicas}",
        "seed": seed,
        "workload": {
            "kind": "synthetic",
            "num_requests": num_requests,
            "arrival": {"process": "gamma", "rate_rps": rate_rps, "cv": cv},
            "prompt_tokens": {"dist": "empirical", "trace": "builtin:azure-2023-conv", "column": "prompt"},
            "output_tokens": {"dist": "empirical", "trace": "builtin:azure-2023-conv", "column": "output"},
        },
        "cluster": {"num_replicas": num_replicas, "model": "llama-3-8b", "hardware": "h100"},
        "router": {"policy": "least_outstanding"},
    }


def measure_capacity(num_requests: int, rate_rps: float, cv: float, seed: int) -> float:
    """Requests/s one replica sustains when overloaded."""
    import servesim.api

    summary = servesim.api.simulate(scenario(num_requests, 1, rate_rps, cv, seed)).summary
    # A few trace prompts exceed the model's context and are rejected at arrival; all others must finish.
    if summary["num_finished"] + summary["num_rejected"] < summary["num_requests"]:
        raise SystemExit(f"capacity run finished only {summary['num_finished']} of {summary['num_requests']} requests")
    return float(summary["requests_per_s"])


def run_one(num_requests: int, num_replicas: int, rate_rps: float, cv: float, seed: int) -> dict:
    """One size, in this (child) process."""
    started = time.perf_counter()
    import servesim.api

    imported = time.perf_counter()
    result = servesim.api.simulate(scenario(num_requests, num_replicas, rate_rps, cv, seed))
    finished = time.perf_counter()
    s = result.summary
    simulate_s = finished - imported
    return {
        "num_requests": s["num_requests"],
        "num_finished": s["num_finished"],
        "num_rejected": s["num_rejected"],
        "num_replicas": s["num_replicas"],
        "num_steps": s["num_steps"],
        "rate_rps": round(rate_rps, 3),
        "cv": cv,
        "sim_time_s": round(s["sim_time_s"], 1),
        "import_s": round(imported - started, 3),
        "simulate_wall_s": round(simulate_s, 3),
        "total_wall_s": round(finished - started, 3),
        "wall_us_per_request": round(1e6 * simulate_s / max(1, s["num_requests"]), 3),
        "req_per_wall_s": round(s["num_requests"] / simulate_s, 1) if simulate_s > 0 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "utilization": round(s["utilization"]["mean"], 3),
        "requests_per_s": round(s["requests_per_s"], 2),
        "ttft_p99_s": s["ttft_s"]["p99"],
        "tpot_mean_s": s["tpot_s"]["mean"],
    }


def _sizes(text: str) -> list[int]:
    sizes = [int(part.strip().replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 1 for n in sizes):
        raise SystemExit(f"--sizes {text!r}: expected positive counts, e.g. 100000,1000000")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"request counts, comma-separated (default {DEFAULT_SIZES})")
    parser.add_argument("--replicas", type=int, default=64, help="replicas of the fleet (default 64)")
    parser.add_argument("--cv", type=float, default=2.0, help="coefficient of variation of the Gamma gaps (default 2.0)")
    parser.add_argument("--load", type=float, default=0.8, help="offered load as a fraction of capacity (default 0.8)")
    parser.add_argument("--capacity", type=float, default=None,
                        help="one replica's capacity in req/s; default: measure it")
    parser.add_argument("--capacity-requests", type=int, default=4000, help="requests of the capacity run (default 4000)")
    parser.add_argument("--capacity-rate", type=float, default=1000.0,
                        help="arrival rate of the capacity run, req/s (default 1000: overloaded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-ratio", type=float, default=1.5,
                        help="flatness limit on per-request wall time over the smallest size's (default 1.5)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per size, nothing else on stdout")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one is not None:
        print(json.dumps(run_one(args.one, args.replicas, args.rate, args.cv, args.seed)))
        return

    def note(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    sizes = sorted(_sizes(args.sizes))
    capacity = args.capacity
    if capacity is None:
        started = time.perf_counter()
        capacity = measure_capacity(args.capacity_requests, args.capacity_rate, args.cv, args.seed)
        note(f"capacity of one replica: {capacity:.2f} req/s (overloaded run of {args.capacity_requests:,} requests "
             f"at {args.capacity_rate:g} req/s, {time.perf_counter() - started:.1f} s wall)")
    rate = args.load * args.replicas * capacity
    note(f"arrival rate: {args.load:g} x {args.replicas} replicas x {capacity:.2f} req/s = {rate:.1f} req/s "
         f"(Gamma gaps, cv {args.cv:g})")

    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--replicas", str(args.replicas), "--rate", repr(rate),
               "--cv", repr(args.cv), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"size {n:,} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["capacity_rps"] = round(capacity, 3)
        row["load"] = args.load
        rows.append(row)
        row["us_per_request_ratio"] = round(row["wall_us_per_request"] / rows[0]["wall_us_per_request"], 3)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            note(f"{n:,} requests: simulate {row['simulate_wall_s']} s, {row['wall_us_per_request']} us/request, "
                 f"peak RSS {row['peak_rss_mb']} MB")

    worst = max(r["us_per_request_ratio"] for r in rows)
    verdict = "ok" if worst <= args.max_ratio else "EXCEEDED"
    if args.json:
        print(f"flatness: worst us/request ratio {worst:.2f} (limit {args.max_ratio:g}): {verdict}", file=sys.stderr)
        return
    print(f"\n| requests | replicas | rate req/s | steps | utilization | simulate wall s | total wall s | us/request "
          f"| x smallest | sim req/wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['num_requests']:,} | {r['num_replicas']} | {r['rate_rps']:.1f} | {r['num_steps']:,} | "
              f"{r['utilization']} | {r['simulate_wall_s']} | {r['total_wall_s']} | {r['wall_us_per_request']} | "
              f"{r['us_per_request_ratio']:.2f} | {r['req_per_wall_s']:,.0f} | {r['peak_rss_mb']} |")
    print(f"\nflatness: worst us/request ratio {worst:.2f} (limit {args.max_ratio:g}): {verdict}")


if __name__ == "__main__":
    main()
