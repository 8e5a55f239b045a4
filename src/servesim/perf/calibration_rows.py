"""Measured step latencies (the ``*_steps.csv`` calibration format) as batch shapes.

Reads rows like ``shared/calibration/h100/llama-3-8b_steps.csv`` and compares
a ``StepTimeModel`` with them.  Nothing in servesim needs these files to run;
this is the bridge the tests and calibration use.

Run ``python -m servesim.perf.calibration_rows CSV [HARDWARE_ID]`` to print
predicted against measured times.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from servesim.perf.batch_shape import BatchShape
from servesim.perf.steptime import StepTimeModel


@dataclass(frozen=True, slots=True)
class StepRow:
    """One measured step.

    model: catalog id; kind: ``prefill`` | ``decode`` | ``mixed``;
    prefill_lens: prompt lengths computed from scratch this step (tokens);
    decode_batch: decode sequences; decode_ctx: cached tokens of each;
    graphed: replayed as a CUDA graph; median_s: measured median (seconds).
    """

    model: str
    kind: str
    prefill_lens: tuple[int, ...]
    decode_batch: int
    decode_ctx: int
    graphed: bool
    median_s: float

    def shape(self) -> BatchShape:
        """The step as a ``BatchShape``; each decode reads its cache plus the new token."""
        return BatchShape.build(
            prefill_chunks=[(0, n) for n in self.prefill_lens],
            decode_context_lens=[self.decode_ctx + 1] * self.decode_batch,
        )

    def label(self) -> str:
        """Short description, e.g. ``decode 32x2048 graphed``."""
        parts = []
        if self.prefill_lens:
            lens = self.prefill_lens
            if len(lens) > 1 and len(set(lens)) == 1:
                parts.append(f"prefill {len(lens)}x{lens[0]}")
            else:
                parts.append(f"prefill {'+'.join(map(str, lens))}")
        if self.decode_batch:
            parts.append(f"decode {self.decode_batch}x{self.decode_ctx}")
        return " + ".join(parts) + (" graphed" if self.graphed else " eager")


def read_step_rows(path: str | PathLike[str]) -> list[StepRow]:
    """Parse a steps CSV (columns: model, kind, prefill_lens, decode_batch, decode_ctx, graphed, median_ms)."""
    rows = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            lens = tuple(int(x) for x in raw["prefill_lens"].split("+") if x)
            rows.append(
                StepRow(
                    model=raw["model"],
                    kind=raw["kind"],
                    prefill_lens=lens,
                    decode_batch=int(raw["decode_batch"]),
                    decode_ctx=int(raw["decode_ctx"]),
                    graphed=raw["graphed"] == "1",
                    median_s=float(raw["median_ms"]) / 1e3,
                )
            )
    return rows


def predict(graphed: StepTimeModel, eager: StepTimeModel, row: StepRow) -> float:
    """Predicted seconds for ``row`` from the model matching its graph mode."""
    return (graphed if row.graphed else eager).time_s(row.shape())


def format_table(graphed: StepTimeModel, eager: StepTimeModel, rows: list[StepRow]) -> str:
    """A plain-text table: row, measured ms, predicted ms, signed error %."""
    lines = [f"{'step':44s} {'measured':>9s} {'predicted':>9s} {'error':>7s}"]
    for row in rows:
        pred = predict(graphed, eager, row)
        err = 100 * (pred - row.median_s) / row.median_s
        lines.append(f"{row.label():44s} {row.median_s * 1e3:8.2f}  {pred * 1e3:8.2f}  {err:+6.1f}%")
    return "\n".join(lines)


def _main(argv: list[str]) -> int:
    from servesim.perf.catalog import Catalog

    if not 1 <= len(argv) <= 2:
        print("usage: python -m servesim.perf.calibration_rows STEPS_CSV [HARDWARE_ID]", file=sys.stderr)
        return 2
    rows = read_step_rows(argv[0])
    catalog = Catalog.default()
    model = catalog.model(rows[0].model)
    hardware = catalog.hardware(argv[1] if len(argv) > 1 else "h100")
    print(format_table(StepTimeModel(model, hardware), StepTimeModel(model, hardware, cuda_graphs=False), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
