"""Sweeps and searches over scenarios: specs, axis expansion, executors (local processes, Ray),
the DuckDB result store, and the SLO-aware deployment search (docs/sweeps.md).

Heavy dependencies (duckdb, optuna, ray) are imported where they are used.
"""

from servesim.sweep.axes import RunSpec, build_runs, config_hash, expand_axes
from servesim.sweep.runner import SweepReport, run_sweep
from servesim.sweep.spec import SearchSpec, SweepSpec, load_spec

__all__ = ["RunSpec", "SearchSpec", "SweepReport", "SweepSpec", "build_runs", "config_hash", "expand_axes",
           "load_spec", "run_sweep"]
