"""Per-request records, SLO targets and the end-of-run summary.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "FINISHED": "servesim.metrics.records",
        "IN_FLIGHT": "servesim.metrics.records",
        "PERCENTILES": "servesim.metrics.stats",
        "REJECTED": "servesim.metrics.records",
        "RUN_VARYING_KEYS": "servesim.metrics.summary",
        "RequestTable": "servesim.metrics.records",
        "RunInfo": "servesim.metrics.records",
        "STATUS_NAMES": "servesim.metrics.records",
        "SloTargets": "servesim.metrics.config",
        "TimeSeries": "servesim.metrics.records",
        "TimeSeriesBuilder": "servesim.metrics.records",
        "describe": "servesim.metrics.stats",
        "deterministic_view": "servesim.metrics.summary",
        "slo_met": "servesim.metrics.slo",
        "summarize": "servesim.metrics.summary",
    },
)
