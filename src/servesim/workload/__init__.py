"""Workloads: the request model, trace readers, synthetic generators and statistics.

    config      WorkloadConfig = TraceWorkloadConfig | SyntheticWorkloadConfig
    traces      read_trace and the per-format readers (Azure, BurstGPT, Mooncake)
    synthetic   pure generators of arrival gaps and token lengths
    transforms  window / rate scaling / sampling / truncation of a Workload
    builder     build_workload(config, streams) -> Workload
    stats       trace_stats(workload) -> dict, format_trace_stats(stats) -> str
"""

from servesim.workload.builder import build_workload
from servesim.workload.config import (
    ArrivalConfig,
    LengthConfig,
    SyntheticWorkloadConfig,
    TraceWorkloadConfig,
    WorkloadConfig,
    parse_workload_config,
)
from servesim.workload.request import Request, Workload
from servesim.workload.stats import format_trace_stats, trace_stats
from servesim.workload.traces import read_azure, read_burstgpt, read_mooncake, read_trace

__all__ = [
    "ArrivalConfig",
    "LengthConfig",
    "Request",
    "SyntheticWorkloadConfig",
    "TraceWorkloadConfig",
    "Workload",
    "WorkloadConfig",
    "build_workload",
    "format_trace_stats",
    "parse_workload_config",
    "read_azure",
    "read_burstgpt",
    "read_mooncake",
    "read_trace",
    "trace_stats",
]
