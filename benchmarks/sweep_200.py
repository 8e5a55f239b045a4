"""A sweep of 200 small scenarios, timed on local worker processes and on a local Ray instance.

    python benchmarks/sweep_200.py [--workers 2] [--requests 200] [--out /tmp/sweep_200]

Writes the spec (2 GPU types x 2 replica counts x 50 random samples of load
and batch limit, each run 200 requests of Llama-3-8B), then runs it twice
through the command line from empty output folders, ``--workers N`` and
``--ray --workers N``, and prints each wall time (process start to exit,
Ray's start-up included) and checks that both recorded the same 200 runs with
the same results.  The numbers in docs/sweeps.md come from this script.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml


def spec(num_requests: int) -> dict:
    return {
        "name": "sweep-200",
        "base": {
            "seed": 0,
            "workload": {"kind": "synthetic", "num_requests": num_requests,
                         "arrival": {"process": "poisson", "rate_rps": 5.0},
                         "prompt_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.8, "max": 4000},
                         "output_tokens": {"dist": "lognormal", "median": 120, "sigma": 0.6, "max": 1000}},
            "cluster": {"model": "llama-3-8b"},
            "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
        },
        "axes": [
            {"kind": "grid", "fields": {"cluster.hardware": ["h100", "a100"], "cluster.num_replicas": [1, 2]}},
            {"kind": "random", "samples": 50, "seed": 0,
             "fields": {"workload.arrival.rate_rps": {"float": [1.0, 20.0]},
                        "scheduler.max_num_seqs": {"int": [16, 256]}}},
        ],
    }


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def results(out: Path) -> list[tuple]:
    db = duckdb.connect(str(out / "results.duckdb"), read_only=True)
    try:
        return db.execute("SELECT config_hash, status, ttft_s__p99, num_steps FROM runs ORDER BY config_hash").fetchall()
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sweep_200"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    spec_path = args.out / "sweep_200.yaml"
    spec_path.write_text(yaml.safe_dump(spec(args.requests), sort_keys=False))
    cli = [sys.executable, "-m", "servesim", "sweep", str(spec_path), "--workers", str(args.workers), "--no-progress"]
    local_s = timed(cli + ["--out", str(args.out / "local")])
    ray_s = timed(cli + ["--ray", "--out", str(args.out / "ray")])
    local, on_ray = results(args.out / "local"), results(args.out / "ray")
    assert len(local) == 200 and local == on_ray, "local and Ray sweeps differ"
    failed = sum(row[1] != "done" for row in local)
    print(f"200 runs ({args.requests} requests each, {failed} failed), {args.workers} workers:")
    print(f"  local processes: {local_s:.1f} s wall")
    print(f"  Ray (local instance): {ray_s:.1f} s wall")


if __name__ == "__main__":
    main()
