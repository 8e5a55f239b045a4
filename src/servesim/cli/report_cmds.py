"""``servesim report``: an HTML report (and a markdown summary) of a run or a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from servesim.cli.app import app


@app.command()
def report(
    path: Path = typer.Argument(..., help="A run's or replay's output folder (servesim run/replay --out DIR) or a "
                                "sweep's or search's."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="HTML file to write (default PATH/report.html); the markdown summary goes beside it (.md)."
    ),
    compare: Optional[Path] = typer.Option(
        None, "--compare", help="A replay's folder (servesim replay --out) of the same workload: adds a section "
        "comparing PATH with it (table and latency CDFs)."
    ),
) -> None:
    """Write one self-contained HTML report (plotly, works offline) and a markdown summary."""
    from servesim.report.html import write_report

    html_path, md_path = write_report(path, out, compare)
    typer.echo(f"report written to {html_path} (summary: {md_path})")
