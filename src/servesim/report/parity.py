"""Parity report of step-time predictions: a predicted-vs-measured plot, as PNG and HTML.

The plot is log-log, one marker per series (``kind`` and ``graphed``), with
the ``y = x`` line and a shaded +-10% band.  The HTML page is self-contained:
the plot is embedded as inline SVG next to the error table and the worst
rows; it loads nothing from the network.

matplotlib is imported inside the functions (it is slow to import and only
these commands need it) and always draws with the Agg backend, through a
bare ``Figure``: no pyplot, no global figure state.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from servesim.perf.validate import ErrorSlice, WorstRow

__all__ = ["parity_figure", "parity_html", "write_parity_report"]

_MARKERS = {"prefill eager": "o", "decode graphed": "s", "decode eager": "^", "mixed eager": "D"}
_BAND = 0.10


def parity_figure(measured_ms: Sequence[float], predicted_ms: Sequence[float], series: Sequence[str], title: str = "") -> Any:
    """A matplotlib ``Figure``: predicted against measured step time (ms), one marker per series."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measured = np.asarray(measured_ms, dtype=np.float64)
    predicted = np.asarray(predicted_ms, dtype=np.float64)
    fig = Figure(figsize=(6.4, 6.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    low = 0.8 * min(measured.min(), predicted.min())
    high = 1.25 * max(measured.max(), predicted.max())
    line = np.geomspace(low, high, 50)
    ax.fill_between(line, line * (1 - _BAND), line * (1 + _BAND), color="0.88", label="±10%")
    ax.plot(line, line, color="0.4", linewidth=1, label="y = x")
    labels = np.asarray(series)
    for name in dict.fromkeys(series):
        mask = labels == name
        ax.scatter(measured[mask], predicted[mask], marker=_MARKERS.get(name, "o"), s=28, alpha=0.85, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("measured step time (ms)")
    ax.set_ylabel("predicted step time (ms)")
    ax.set_title(title or "step time: predicted vs measured")
    ax.grid(True, which="both", linewidth=0.3, color="0.8")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def parity_html(title: str, svg: str, slices: Sequence[ErrorSlice], worst: Sequence[WorstRow], notes: str = "") -> str:
    """A self-contained HTML page: the inline SVG plot, the error table and the worst rows."""
    esc = html.escape
    slice_rows = "".join(
        f"<tr><td>{esc(s.label)}</td><td>{s.num_rows}</td><td>{s.median_ape_pct:.1f}%</td>"
        f"<td>{s.p90_ape_pct:.1f}%</td><td>{s.max_ape_pct:.1f}%</td></tr>"
        for s in slices
    )
    worst_rows = "".join(
        f"<tr><td>{w.index}</td><td>{esc(w.label)}</td><td>{w.measured_ms:.2f}</td>"
        f"<td>{w.predicted_ms:.2f}</td><td>{w.error_pct:+.1f}%</td></tr>"
        for w in worst
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:nth-child(2), th {{ text-align: left; }}
.plot svg {{ max-width: 640px; height: auto; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>{esc(notes)}</p>
<div class="plot">{_strip_xml_header(svg)}</div>
<h2>Absolute percentage error by slice</h2>
<table><tr><th>slice</th><th>rows</th><th>median</th><th>p90</th><th>max</th></tr>{slice_rows}</table>
<h2>Worst rows</h2>
<table><tr><th>row</th><th>step</th><th>measured ms</th><th>predicted ms</th><th>error</th></tr>{worst_rows}</table>
</body></html>
"""


def write_parity_report(
    out_dir: str | Path,
    measured_ms: Sequence[float],
    predicted_ms: Sequence[float],
    series: Sequence[str],
    slices: Sequence[ErrorSlice],
    worst: Sequence[WorstRow],
    title: str,
    notes: str = "",
) -> dict[str, Path]:
    """Write ``parity.png`` and ``parity.html`` into ``out_dir`` (created if needed); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = parity_figure(measured_ms, predicted_ms, series, title)
    png = out / "parity.png"
    fig.savefig(png, format="png")
    buffer = io.StringIO()
    # No date in the SVG metadata: the same inputs give the same page.
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    page = out / "parity.html"
    page.write_text(parity_html(title, buffer.getvalue(), slices, worst, notes), encoding="utf-8")
    return {"png": png, "html": page}


def _strip_xml_header(svg: str) -> str:
    # An inline <svg> must not carry the XML declaration or DOCTYPE.
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
