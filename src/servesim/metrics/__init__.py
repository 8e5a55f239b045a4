"""Per-request records, SLO targets and the end-of-run summary."""

from servesim.metrics.config import SloTargets
from servesim.metrics.records import (
    FINISHED,
    IN_FLIGHT,
    REJECTED,
    STATUS_NAMES,
    RequestTable,
    RunInfo,
    TimeSeries,
    TimeSeriesBuilder,
)
from servesim.metrics.slo import slo_met
from servesim.metrics.stats import PERCENTILES, describe
from servesim.metrics.summary import RUN_VARYING_KEYS, deterministic_view, summarize

__all__ = [
    "FINISHED",
    "IN_FLIGHT",
    "PERCENTILES",
    "REJECTED",
    "RUN_VARYING_KEYS",
    "STATUS_NAMES",
    "RequestTable",
    "RunInfo",
    "SloTargets",
    "TimeSeries",
    "TimeSeriesBuilder",
    "describe",
    "deterministic_view",
    "slo_met",
    "summarize",
]
