"""Output files, the terminal summary and progress display of a run; the HTML report of a run or a sweep.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "NullProgress": "servesim.report.progress",
        "OUTPUT_FILES": "servesim.report.files",
        "Progress": "servesim.report.progress",
        "RichProgress": "servesim.report.progress",
        "deterministic_view": "servesim.metrics.summary",
        "render_summary": "servesim.report.table",
        "requests_arrow": "servesim.report.files",
        "summary_json": "servesim.report.files",
        "summary_text": "servesim.report.table",
        "timeseries_arrow": "servesim.report.files",
        "write_outputs": "servesim.report.files",
        "write_parquet": "servesim.report.files",
        "write_report": "servesim.report.html",
    },
)
