"""Inputs for the report tests: a small run's scenario, and small sweep and search result folders in
the issue-8 contract's schema (docs/sweeps.md), made by hand.

``RUN_SCENARIO``: 80 synthetic requests on two replicas with TTFT and TPOT targets (a fraction of a second).
``make_sweep(dir)`` writes ``dir/results.duckdb`` with a ``runs`` table of
six runs over ``cluster.num_replicas`` x ``cluster.hardware`` (one failed)
and ``meta``; ``make_search(dir)`` adds a ``trials`` table of six trials over
two objectives.  The metric values are made up but consistent (more
replicas: lower latency, higher cost), so the charts have a shape.
"""

from __future__ import annotations

import json
from pathlib import Path

RUN_SCENARIO = {
    "name": "report-small",
    "seed": 3,
    "workload": {
        "kind": "synthetic",
        "num_requests": 80,
        "arrival": {"process": "poisson", "rate_rps": 8.0},
        "prompt_tokens": {"dist": "uniform", "low": 20, "high": 600},
        "output_tokens": {"dist": "uniform", "low": 1, "high": 60},
    },
    "cluster": {"num_replicas": 2},
    "slo": {"ttft_s": 0.05, "tpot_s": 0.02},
}

RUNS = [
    # config_hash, status, error, replicas, hardware, rps, ttft p99 (s), tpot p99 (s), attainment, cost usd
    ("a1b2c3d4e5f60001", "done", None, 1, "h100", 5.0, 0.900, 0.040, 0.80, 2.49),
    ("a1b2c3d4e5f60002", "done", None, 2, "h100", 5.5, 0.300, 0.020, 0.97, 4.98),
    ("a1b2c3d4e5f60003", "done", None, 4, "h100", 5.5, 0.120, 0.012, 1.00, 9.96),
    ("a1b2c3d4e5f60004", "done", None, 1, "a100", 3.0, 2.500, 0.080, 0.40, 1.79),
    ("a1b2c3d4e5f60005", "done", None, 2, "a100", 5.0, 0.700, 0.035, 0.90, 3.58),
    ("a1b2c3d4e5f60006", "failed", "DeploymentError: llama-3-70b does not fit", 4, "a100", None, None, None, None, None),
]
# trial, config_hash, feasible, pruned, cost_usd_per_hr, ttft_s__p99, pareto
TRIALS = [
    (0, "a1b2c3d4e5f60001", False, False, 2.49, 0.900, False),
    (1, "a1b2c3d4e5f60002", True, False, 4.98, 0.300, True),
    (2, "a1b2c3d4e5f60003", True, False, 9.96, 0.120, True),
    (3, "a1b2c3d4e5f60004", False, False, 1.79, 2.500, False),
    (4, "a1b2c3d4e5f60005", True, False, 3.58, 0.700, True),
    (5, "a1b2c3d4e5f60006", False, True, None, None, False),
]
PARETO_HASHES = {"a1b2c3d4e5f60002", "a1b2c3d4e5f60003", "a1b2c3d4e5f60005"}
BEST_HASH = "a1b2c3d4e5f60005"  # the cheapest feasible trial


def make_sweep(out: Path, kind: str = "sweep") -> Path:
    """Write ``out/results.duckdb`` (runs and meta); returns ``out``."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    db = duckdb.connect(str(out / "results.duckdb"))
    db.execute("""CREATE TABLE runs (config_hash VARCHAR PRIMARY KEY, status VARCHAR, error VARCHAR, wall_s DOUBLE,
        finished_at DOUBLE, config_json VARCHAR, axis__cluster__num_replicas DOUBLE, axis__cluster__hardware VARCHAR,
        requests_per_s DOUBLE, ttft_s__p99 DOUBLE, tpot_s__p99 DOUBLE, slo__attainment DOUBLE, cost__usd DOUBLE,
        energy_j DOUBLE)""")
    for i, (h, status, error, replicas, hw, rps, ttft, tpot, att, usd) in enumerate(RUNS):
        config = {"cluster": {"num_replicas": replicas, "hardware": hw}}
        energy = None if usd is None else 1e6 * replicas
        db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [h, status, error, 0.5 + i, 1.7e9 + i, json.dumps(config), float(replicas), hw, rps, ttft, tpot,
                    att, usd, energy])
    db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    spec = {"name": f"tiny-{kind}", "objectives": [{"metric": "cost_usd_per_hr", "direction": "minimize"},
                                                  {"metric": "ttft_s__p99", "direction": "minimize"}]}
    db.execute("INSERT INTO meta VALUES ('kind', ?), ('spec_json', ?)", [kind, json.dumps(spec)])
    db.close()
    return out


def make_search(out: Path, with_pareto_column: bool = True) -> Path:
    """A sweep folder plus a ``trials`` table (kind 'search'); returns ``out``."""
    import duckdb

    make_sweep(out, kind="search")
    db = duckdb.connect(str(out / "results.duckdb"))
    pareto = ", pareto BOOLEAN" if with_pareto_column else ""
    db.execute("CREATE TABLE trials (trial INTEGER, config_hash VARCHAR, feasible BOOLEAN, pruned BOOLEAN, "
               f"cost_usd_per_hr DOUBLE, ttft_s__p99 DOUBLE{pareto})")
    for row in TRIALS:
        values = list(row if with_pareto_column else row[:-1])
        db.execute(f"INSERT INTO trials VALUES ({', '.join('?' for _ in values)})", values)
    db.close()
    return out
