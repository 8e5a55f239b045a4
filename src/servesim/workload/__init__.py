"""Workloads: the request model, trace readers, synthetic generators and statistics.

config      WorkloadConfig = TraceWorkloadConfig | SyntheticWorkloadConfig
traces      read_trace and the per-format readers (Azure, BurstGPT, Mooncake)
synthetic   pure generators of arrival gaps and token lengths
transforms  window / rate scaling / sampling / truncation of a Workload
builder     build_workload(config, streams) -> Workload
stats       trace_stats(workload) -> dict, format_trace_stats(stats) -> str
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "ArrivalConfig": "servesim.workload.config",
        "LengthConfig": "servesim.workload.config",
        "Request": "servesim.workload.request",
        "SyntheticWorkloadConfig": "servesim.workload.config",
        "TraceWorkloadConfig": "servesim.workload.config",
        "Workload": "servesim.workload.request",
        "WorkloadConfig": "servesim.workload.config",
        "build_workload": "servesim.workload.builder",
        "format_trace_stats": "servesim.workload.stats",
        "parse_workload_config": "servesim.workload.config",
        "read_azure": "servesim.workload.traces",
        "read_burstgpt": "servesim.workload.traces",
        "read_mooncake": "servesim.workload.traces",
        "read_trace": "servesim.workload.traces",
        "trace_stats": "servesim.workload.stats",
    },
)
