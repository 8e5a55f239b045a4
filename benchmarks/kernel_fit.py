"""Fit servesim's per-kernel models to vLLM's measured kernels (AIConfigurator's tables) and report the errors.

    python benchmarks/kernel_fit.py [--kernels DIR] [--write] [--markdown]

Prints one row per GPU x family x dtype: the rows fitted, the in-sample
median / p90 / max absolute percentage error (APE), and the held-out-GPU
median / p90 (the GPU predicted from the median of the OTHER GPUs'
parameters: the rule for a GPU with no tables).  MoE rows add the skewed
(power-law routed) rows' error under the balanced fit.  ``--write`` rewrites
``src/servesim/data/engines/vllm_kernels.yaml``; ``--markdown`` prints the
table as markdown.  See ``servesim.perf.kernel_fit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from servesim.perf.kernel_fit import FitReport, fit_all, render_yaml  # noqa: E402

YAML_PATH = REPO / "src" / "servesim" / "data" / "engines" / "vllm_kernels.yaml"
COLUMNS = ("gpu", "family", "dtype", "source", "rows", "med %", "p90 %", "max %", "held-out med %", "held-out p90 %")


def table_rows(report: FitReport) -> list[tuple[str, ...]]:
    """One tuple of cells per fit, in ``COLUMNS`` order."""
    out = []
    for (gpu, family, dtype), fit in report.fits.items():
        ins, held = fit.in_sample, fit.held_out
        cells = [gpu, family, dtype, fit.source]
        if ins is not None:
            cells += [str(ins.rows), f"{ins.median:.1f}", f"{ins.p90:.1f}", f"{ins.max:.0f}"]
        else:
            cells += ["0", "-", "-", "-"]
        cells += [f"{held.median:.1f}", f"{held.p90:.1f}"] if held is not None else ["-", "-"]
        out.append(tuple(cells))
        if fit.skewed is not None:  # MoE skewed rows under the balanced (or, A100, the other GPUs') fit
            sk = fit.skewed
            label = "moe skewed" if fit.params is not None else "moe skewed (held-out)"
            out.append((gpu, label, dtype, "power_law_1.01/1.2", str(sk.rows), f"{sk.median:.1f}", f"{sk.p90:.1f}",
                        f"{sk.max:.0f}", "-", "-"))  # fmt: skip
    return out


def print_plain(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    for row in (COLUMNS, *rows):
        print("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def print_markdown(rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" if i < 4 else "---:" for i in range(len(COLUMNS))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_skew(report: FitReport) -> None:
    print("\nMoE: median measured skewed/balanced time by num_tokens")
    for (gpu, _family, dtype), fit in report.fits.items():
        if fit.skew_ratio:
            ratios = "  ".join(f"{t}:{r:.2f}" for t, r in fit.skew_ratio.items())
            print(f"  {gpu} {dtype}: {ratios}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default=str(REPO.parent / "shared" / "kernels" / "vllm"), help="kernel tables root")
    parser.add_argument("--write", action="store_true", help=f"rewrite {YAML_PATH.relative_to(REPO)}")
    parser.add_argument("--markdown", action="store_true", help="print the error table as markdown")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    report = fit_all(args.kernels)
    elapsed = time.perf_counter() - start
    rows = table_rows(report)
    (print_markdown if args.markdown else print_plain)(rows)
    print_skew(report)
    print(f"\nfit time: {elapsed:.1f} s")
    if args.write:
        YAML_PATH.parent.mkdir(parents=True, exist_ok=True)
        YAML_PATH.write_text(render_yaml(report), encoding="utf-8")
        print(f"wrote {YAML_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
