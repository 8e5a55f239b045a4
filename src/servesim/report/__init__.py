"""Output files, the terminal summary and progress display of a run."""

from servesim.metrics.summary import deterministic_view
from servesim.report.files import (
    OUTPUT_FILES,
    requests_arrow,
    summary_json,
    timeseries_arrow,
    write_outputs,
    write_parquet,
)
from servesim.report.progress import NullProgress, Progress, RichProgress
from servesim.report.table import render_summary, summary_text

__all__ = [
    "OUTPUT_FILES",
    "NullProgress",
    "Progress",
    "RichProgress",
    "deterministic_view",
    "render_summary",
    "requests_arrow",
    "summary_json",
    "summary_text",
    "timeseries_arrow",
    "write_outputs",
    "write_parquet",
]
