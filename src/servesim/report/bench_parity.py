"""Parity plot of benchmark predictions: one predicted-vs-measured panel per metric.

Each panel is log-log with the ``y = x`` line and a shaded +-10% band, like
the step-time parity plot (``servesim.report.parity``); matplotlib is
imported inside the function and draws through a bare ``Figure`` (Agg).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_bench_parity"]

_BAND = 0.10


def write_bench_parity(path: str | Path, panels: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str) -> Path:
    """Write a PNG with one panel per ``(metric, measured, predicted)`` to ``path``; returns it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 30, 100, 0.5: not 3x10^1

    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    for k, (metric, measured_values, predicted_values) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        measured = np.asarray(measured_values, dtype=np.float64)
        predicted = np.asarray(predicted_values, dtype=np.float64)
        low = 0.8 * min(measured.min(), predicted.min())
        high = 1.25 * max(measured.max(), predicted.max())
        line = np.geomspace(low, high, 50)
        ax.fill_between(line, line * (1 - _BAND), line * (1 + _BAND), color="0.88", label="±10%")
        ax.plot(line, line, color="0.4", linewidth=1, label="y = x")
        ax.scatter(measured, predicted, s=24, alpha=0.85)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        for axis in (ax.xaxis, ax.yaxis):
            # Label 1, 2, 5 x each decade in plain numbers; minor ticks stay as grid lines (their labels collide).
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
        ax.grid(True, which="both", linewidth=0.3, color="0.8")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
