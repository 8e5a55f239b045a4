"""The numbers and pictures of docs/tutorial.md: the default scenario, its report, and a capacity grid.

    python benchmarks/tutorial_capacity.py [--out out/tutorial] [--screenshots]

1. Runs ``examples/default.yaml`` and writes its report (``OUT/default/report.html``).
2. Runs the Azure conversation trace at 4x its rate on 1-6 replicas of four GPU types (``servesim run
   --set`` by hand, here in a loop) and prints the tutorial's table.
3. Stores those runs in a folder in the sweep layout (``OUT/capacity/results.duckdb``: ``runs`` and,
   as a grid search over the same space, ``trials`` with cost per hour and p99 TTFT as objectives and
   the tutorial's SLOs as constraints) and writes its report.  ``servesim sweep`` / ``servesim search``
   write this layout themselves; this script writes it directly so the pictures use real runs.
4. With ``--screenshots`` (needs Debian's chromium): docs/images/report-run.png and report-search.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import servesim
from servesim.config import load_config
from servesim.report.html import write_report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "examples" / "default.yaml"
GRID = {"h100": (1, 2, 3, 4), "mi300x": (1, 2, 3), "a100": (2, 4, 6), "l40s": (4, 6)}
RATE_SCALE = 4
TTFT_P99_S, TPOT_P99_S = 0.5, 0.05  # the tutorial's capacity targets (examples/default.yaml's SLO, at p99)


def flatten(summary: dict, prefix: str = "") -> dict:
    """Scalar leaves of the summary keyed by their path joined with '__' (lists left out), as the sweep stores them."""
    out = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}__"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
    return out


def config_hash(config) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def capacity_runs() -> list[dict]:
    rows = []
    for hw, counts in GRID.items():
        for n in counts:
            config = load_config(DEFAULT, [f"workload.rate_scale={RATE_SCALE}", f"cluster.hardware={hw}",
                                           f"cluster.num_replicas={n}"])
            result = servesim.simulate(config)
            s = result.summary
            rows.append({"config": config, "hw": hw, "n": n, "summary": s,
                         "usd_per_hr": s["cost"]["price_usd_per_gpu_hr"] * s["num_gpus"]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| GPU | replicas | $/hour | TTFT p99 | TPOT p99 | SLO attainment | meets both p99 targets |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["summary"]
        ok = s["ttft_s"]["p99"] <= TTFT_P99_S and s["tpot_s"]["p99"] <= TPOT_P99_S
        lines.append(f"| {r['hw']} | {r['n']} | ${r['usd_per_hr']:.2f} | {_ms(s['ttft_s']['p99'])} | "
                     f"{_ms(s['tpot_s']['p99'])} | {100 * s['slo']['attainment']:.1f}% | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def _ms(x: float) -> str:
    return f"{x:,.1f} s" if x >= 10 else f"{x * 1e3:,.0f} ms"


def write_store(rows: list[dict], out: Path) -> None:
    """The runs (and a grid search's trials) in the sweep layout (docs/sweeps.md)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.duckdb").unlink(missing_ok=True)
    flat = [flatten(r["summary"]) for r in rows]
    metrics = sorted({k for f in flat for k, v in f.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    db = duckdb.connect(str(out / "results.duckdb"))
    cols = ", ".join(f'"{m}" DOUBLE' for m in metrics)
    db.execute("CREATE TABLE runs (config_hash VARCHAR PRIMARY KEY, status VARCHAR, error VARCHAR, wall_s DOUBLE, "
               f"finished_at DOUBLE, config_json VARCHAR, axis__cluster__hardware VARCHAR, "
               f"axis__cluster__num_replicas DOUBLE, {cols})")
    db.execute("CREATE TABLE trials (trial INTEGER, config_hash VARCHAR, feasible BOOLEAN, pruned BOOLEAN, "
               "cost_usd_per_hr DOUBLE, ttft_s__p99 DOUBLE)")
    for i, (r, f) in enumerate(zip(rows, flat)):
        h = config_hash(r["config"])
        values = [h, "done", None, f["wall_time_s"], float(i), json.dumps(r["config"].to_dict()), r["hw"], float(r["n"])]
        values += [f.get(m) if isinstance(f.get(m), (int, float)) else None for m in metrics]
        db.execute(f"INSERT INTO runs VALUES ({', '.join('?' for _ in values)})", values)
        s = r["summary"]
        feasible = s["ttft_s"]["p99"] <= TTFT_P99_S and s["tpot_s"]["p99"] <= TPOT_P99_S
        db.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?)", [i, h, feasible, False, r["usd_per_hr"],
                                                                     s["ttft_s"]["p99"]])
    spec = {"name": "capacity-4x", "space": {"cluster.hardware": {"choice": list(GRID)},
                                             "cluster.num_replicas": {"int": [1, 6]}},
            "constraints": [{"metric": "ttft_s__p99", "max": TTFT_P99_S}, {"metric": "tpot_s__p99", "max": TPOT_P99_S}],
            "objectives": [{"metric": "cost_usd_per_hr"}, {"metric": "ttft_s__p99"}]}
    db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    db.execute("INSERT INTO meta VALUES ('kind', 'search'), ('spec_json', ?)", [json.dumps(spec)])
    db.close()


def screenshot(html: Path, png: Path, height: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from headless import inspect_page

    js = ("(() => { const d = [...document.querySelectorAll('div[id^=\"chart-\"]')];"
          " return document.readyState === 'complete' && d.length > 0 && d.every(x => x.querySelector('.main-svg')); })()")
    report = inspect_page(html, js, width=1100, height=900, screenshot_height=height)
    if report.errors:
        raise SystemExit(f"{html}: console errors: {report.errors}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(report.screenshot)
    print(f"{png}: {len(report.screenshot) / 1024:.0f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out") / "tutorial")
    parser.add_argument("--screenshots", action="store_true")
    args = parser.parse_args()
    default = servesim.simulate(DEFAULT)
    default.write(args.out / "default")
    run_html, _ = write_report(args.out / "default")
    print(f"default scenario: report {run_html}")
    rows = capacity_runs()
    print(table(rows))
    write_store(rows, args.out / "capacity")
    search_html, _ = write_report(args.out / "capacity")
    print(f"capacity grid: report {search_html}")
    if args.screenshots:
        screenshot(run_html, ROOT / "docs" / "images" / "report-run.png", 1640)
        screenshot(search_html, ROOT / "docs" / "images" / "report-search.png", 1200)


if __name__ == "__main__":
    main()
