"""Prediction error against measured steps: per-slice APE statistics and the worst rows.

The error of one row is its absolute percentage error, ``APE = 100 *
|predicted - measured| / measured``.  Rows are sliced by ``kind`` and
``graphed`` (the calibration README's convention); each slice reports its
median and 90th percentile (numpy's linear interpolation between order
statistics) and its maximum.  Pure functions of rows and predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from servesim.perf.steprows import KINDS, StepRow

__all__ = [
    "ErrorSlice",
    "WorstRow",
    "ape_pct",
    "error_slices",
    "errors_as_dict",
    "format_error_table",
    "format_worst_rows",
    "slice_label",
    "worst_rows",
]


@dataclass(frozen=True, slots=True)
class ErrorSlice:
    """APE statistics of one slice of rows (percent)."""

    label: str
    num_rows: int
    median_ape_pct: float
    p90_ape_pct: float
    max_ape_pct: float


@dataclass(frozen=True, slots=True)
class WorstRow:
    """One badly predicted row: its 1-based index, label, times (ms) and signed error (percent)."""

    index: int
    label: str
    measured_ms: float
    predicted_ms: float
    error_pct: float


LONG_PREFILL_TOKENS = 1024


def ape_pct(predicted_s: np.ndarray, measured_s: np.ndarray) -> np.ndarray:
    """Absolute percentage error of each prediction, percent."""
    measured = np.asarray(measured_s, dtype=np.float64)
    return 100.0 * np.abs(np.asarray(predicted_s, dtype=np.float64) - measured) / measured


def slice_label(row: StepRow) -> str:
    """The slice a row belongs to, e.g. ``decode graphed`` or ``prefill eager``."""
    return f"{row.kind} {'graphed' if row.graphed else 'eager'}"


def error_slices(rows: Sequence[StepRow], predicted_s: np.ndarray) -> list[ErrorSlice]:
    """One ``ErrorSlice`` per (kind, graphed) present, in ``KINDS`` order, then ``all``."""
    ape = ape_pct(predicted_s, _measured(rows))
    labels = [slice_label(row) for row in rows]
    order = [f"{kind} {mode}" for kind in KINDS for mode in ("graphed", "eager")]
    out = [_slice(name, ape[[lab == name for lab in labels]]) for name in order if name in labels]
    # Long prefills (>= 1024 tokens in the step) are where prefill speed
    # matters for TTFT; issue 3's acceptance target names this slice.
    long_prefill = [row.kind == "prefill" and row.num_tokens >= LONG_PREFILL_TOKENS for row in rows]
    if any(long_prefill):
        out.append(_slice(f"prefill >={LONG_PREFILL_TOKENS} tok", ape[long_prefill]))
    out.append(_slice("all", ape))
    return out


def worst_rows(rows: Sequence[StepRow], predicted_s: np.ndarray, count: int = 10) -> list[WorstRow]:
    """The ``count`` rows with the largest APE, largest first (ties: file order)."""
    measured = _measured(rows)
    ape = ape_pct(predicted_s, measured)
    order = sorted(range(len(rows)), key=lambda i: (-ape[i], i))[:count]
    return [
        WorstRow(
            rows[i].index,
            rows[i].label(),
            float(measured[i] * 1e3),
            float(predicted_s[i] * 1e3),
            float(100.0 * (predicted_s[i] - measured[i]) / measured[i]),
        )
        for i in order
    ]


def format_error_table(slices: Sequence[ErrorSlice]) -> str:
    """A plain-text table: slice, rows, median, p90 and max APE."""
    lines = [f"{'slice':18s} {'rows':>5s} {'median':>8s} {'p90':>8s} {'max':>8s}"]
    for s in slices:
        lines.append(
            f"{s.label:18s} {s.num_rows:5d} {s.median_ape_pct:7.1f}% {s.p90_ape_pct:7.1f}% {s.max_ape_pct:7.1f}%"
        )
    return "\n".join(lines)


def format_worst_rows(worst: Sequence[WorstRow]) -> str:
    """A plain-text table of the worst rows: row number, label, measured, predicted, signed error."""
    lines = [f"{'row':>4s}  {'step':50s} {'measured':>9s} {'predicted':>9s} {'error':>7s}"]
    for w in worst:
        lines.append(
            f"{w.index:4d}  {w.label[:50]:50s} {w.measured_ms:7.2f}ms {w.predicted_ms:7.2f}ms {w.error_pct:+6.1f}%"
        )
    return "\n".join(lines)


def errors_as_dict(slices: Sequence[ErrorSlice], worst: Sequence[WorstRow]) -> dict[str, Any]:
    """JSON-ready ``{"slices": [...], "worst_rows": [...]}``."""
    return {"slices": [asdict(s) for s in slices], "worst_rows": [asdict(w) for w in worst]}


def _slice(label: str, ape: np.ndarray) -> ErrorSlice:
    return ErrorSlice(
        label,
        int(ape.size),
        float(np.median(ape)),
        float(np.percentile(ape, 90)),
        float(ape.max()),
    )


def _measured(rows: Sequence[StepRow]) -> np.ndarray:
    if any(row.measured_s is None for row in rows):
        raise ValueError("every row needs a measured time (column median_ms)")
    return np.array([row.measured_s for row in rows], dtype=np.float64)
