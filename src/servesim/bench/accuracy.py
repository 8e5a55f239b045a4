"""Prediction error of benchmark metrics against measured ones (``servesim validate-bench``).

A measured CSV holds, beside the benchmark columns, ``measured_<metric>`` for
any metric of ``servesim.bench.metrics.METRICS``; an empty cell means "not
measured".  The error of one (row, metric) is its absolute percentage error
``APE = 100 x |predicted - measured| / measured`` (rows measuring 0 have
none and are left out); per metric the summary is
the median, 90th percentile (numpy's linear interpolation) and maximum APE
over its rows (``ErrorSlice``, labelled by the metric), and the worst
(row, metric) pairs are listed with their signed error.  Pure functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from servesim.bench.metrics import METRICS
from servesim.bench.rows import BenchRow, RowProblem
from servesim.perf.validate import ErrorSlice

__all__ = [
    "MEASURED_PREFIX",
    "BenchError",
    "check_measured",
    "errors_dict",
    "format_errors",
    "measured_metrics",
    "metric_errors",
    "worst_errors",
]

MEASURED_PREFIX = "measured_"


@dataclass(frozen=True, slots=True)
class BenchError:
    """One (row, metric) pair: the row's label (its case_id, or ``row i``), the metric, the two
    values in the metric's unit, and the signed percentage error of the prediction."""

    case_id: str
    metric: str
    measured: float
    predicted: float
    error_pct: float


def measured_metrics(columns: Sequence[str]) -> list[str]:
    """The metrics a CSV's columns measure, in ``METRICS`` order."""
    return [m for m in METRICS if MEASURED_PREFIX + m in columns]


def check_measured(row: BenchRow) -> None:
    """Every measured cell of ``row`` is empty or a positive number (``RowProblem`` otherwise)."""
    for metric in METRICS:
        text = row.raw.get(MEASURED_PREFIX + metric, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value >= 0 and math.isfinite(value)):
            raise RowProblem(MEASURED_PREFIX + metric, text, "must be a number >= 0 (or empty: not measured)")


def _pairs(rows: Sequence[BenchRow], predicted: Sequence[dict[str, float]], metric: str) -> list[tuple[int, float, float]]:
    """(row position, measured, predicted) for the rows that measured ``metric`` (above 0: an APE
    needs it) and got a prediction."""
    out = []
    for i, row in enumerate(rows):
        text = row.raw.get(MEASURED_PREFIX + metric, "").strip()
        p = predicted[i][metric]
        if text and float(text) > 0 and math.isfinite(p):
            out.append((i, float(text), p))
    return out


def metric_errors(rows: Sequence[BenchRow], predicted: Sequence[dict[str, float]]) -> list[ErrorSlice]:
    """APE statistics per measured metric (percent), in ``METRICS`` order; metrics no row
    measured are left out."""
    out = []
    for metric in METRICS:
        pairs = _pairs(rows, predicted, metric)
        if not pairs:
            continue
        ape = np.array([100.0 * abs(p - m) / m for _, m, p in pairs])
        out.append(ErrorSlice(metric, len(pairs), float(np.median(ape)), float(np.percentile(ape, 90)), float(ape.max())))
    return out


def worst_errors(rows: Sequence[BenchRow], predicted: Sequence[dict[str, float]], count: int = 10) -> list[BenchError]:
    """The ``count`` (row, metric) pairs with the largest APE, largest first (ties: row, then metric order)."""
    found = []
    for k, metric in enumerate(METRICS):
        for i, m, p in _pairs(rows, predicted, metric):
            found.append((abs(p - m) / m, i, k, BenchError(rows[i].label, metric, m, p, 100.0 * (p - m) / m)))
    found.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [item[3] for item in found[:count]]


def errors_dict(slices: Sequence[ErrorSlice], worst: Sequence[BenchError]) -> dict[str, Any]:
    """JSON-ready ``{"metrics": [...], "worst_rows": [...]}``."""
    return {"metrics": [asdict(s) for s in slices], "worst_rows": [asdict(w) for w in worst]}


def format_errors(slices: Sequence[ErrorSlice], worst: Sequence[BenchError]) -> str:
    """Plain-text tables: APE per metric, then the worst rows."""
    lines = [f"{'metric':22s} {'rows':>5s} {'median':>8s} {'p90':>8s} {'max':>8s}"]
    for s in slices:
        lines.append(f"{s.label:22s} {s.num_rows:5d} {s.median_ape_pct:7.1f}% {s.p90_ape_pct:7.1f}% {s.max_ape_pct:7.1f}%")
    lines += ["", "worst rows", f"{'case_id':24s} {'metric':22s} {'measured':>11s} {'predicted':>11s} {'error':>8s}"]
    for w in worst:
        lines.append(f"{w.case_id[:24]:24s} {w.metric:22s} {w.measured:11.4g} {w.predicted:11.4g} {w.error_pct:+7.1f}%")
    return "\n".join(lines)
