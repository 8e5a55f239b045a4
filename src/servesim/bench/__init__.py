"""Benchmark points predicted by simulation: ``servesim predict-bench`` and ``validate-bench``.

``rows`` reads a benchmark CSV and maps each row to a scenario, ``predict``
checks and simulates them in parallel, ``metrics`` computes a benchmark
client's metrics from a run's request table, ``accuracy`` compares them with
measured ones (docs/benchmarks.md).
"""

from servesim.bench.accuracy import metric_errors, worst_errors
from servesim.bench.metrics import METRICS, bench_metrics
from servesim.bench.predict import check_rows, predict_rows
from servesim.bench.rows import BenchCsv, BenchRow, read_bench_csv, row_scenario

__all__ = [
    "METRICS",
    "BenchCsv",
    "BenchRow",
    "bench_metrics",
    "check_rows",
    "metric_errors",
    "predict_rows",
    "read_bench_csv",
    "row_scenario",
    "worst_errors",
]
