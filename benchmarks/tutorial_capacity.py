"""The numbers and pictures of docs/tutorial.md: the default scenario, its report, and a capacity grid.

    python benchmarks/tutorial_capacity.py [--out out/tutorial] [--screenshots]

1. Runs ``examples/default.yaml`` and writes its report (``OUT/default/report.html``).
2. Runs the Azure conversation trace at 4x its rate on 1-6 replicas of four GPU types (``servesim run
   --set`` by hand, here in a loop) and prints the tutorial's table.
3. Runs the tutorial's search (``servesim search examples/sweeps/tutorial-cheapest-4x.yaml``: every
   GPU type, 1-8 replicas, TP 1-2 at 4x the rate, p99 TTFT <= 500 ms and TPOT <= 50 ms, cost per hour
   and p99 TTFT as objectives) into ``OUT/cheapest-4x`` and writes its report.
4. With ``--screenshots`` (needs Debian's chromium): docs/images/report-run.png and report-search.png.
"""

from __future__ import annotations

import argparse
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


def run_search(out: Path) -> Path:
    """``servesim search examples/sweeps/tutorial-cheapest-4x.yaml`` (the tutorial's section 6) into ``out``."""
    import shutil
    import subprocess

    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "servesim", "search", str(ROOT / "examples" / "sweeps" / "tutorial-cheapest-4x.yaml"),
                    "--out", str(out), "--no-progress"], check=True)
    return out


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
    search_html, _ = write_report(run_search(args.out / "cheapest-4x"))
    print(f"search: report {search_html}")
    if args.screenshots:
        screenshot(run_html, ROOT / "docs" / "images" / "report-run.png", 1640)
        screenshot(search_html, ROOT / "docs" / "images" / "report-search.png", 1200)


if __name__ == "__main__":
    main()
