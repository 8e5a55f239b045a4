"""Writing a run's outputs to a directory.

Files written (all overwritten if present; ``Result.write`` guards the folder,
see ``servesim.out_dir``):

* ``requests.parquet``: every ``RequestTable`` column plus the derived
  ``ttft_s``, ``tpot_s``, ``e2e_s`` and ``queue_delay_s`` (seconds; NaN
  where undefined); ``reject_reason`` is a string column.
* ``timeseries.parquet``: every ``TimeSeries`` column.
* ``config.yaml``: the resolved scenario, ``yaml.safe_dump(sort_keys=False)``
  (so it must hold only YAML-safe types: dicts, lists, str, numbers, bool, None).
* ``summary.json``: ``json.dumps(summary, indent=2, sort_keys=True)``.

Determinism: identical inputs give byte-identical files.  Parquet is written
by pyarrow with a fixed compression and no pandas metadata; its footer holds
no timestamp (the ``created_by`` string names the pyarrow version, so bytes
match only under the same pyarrow).  ``summary.json`` does contain the
host-dependent ``wall_time_s`` and ``simulated_requests_per_wall_s``; compare
runs through ``servesim.metrics.deterministic_view`` (or drop those keys
after loading the JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from servesim.metrics.records import RequestTable, TimeSeries

#: Keys of ``write_outputs``' result, and the file each names.
OUTPUT_FILES = {
    "requests": "requests.parquet",
    "timeseries": "timeseries.parquet",
    "config": "config.yaml",
    "summary": "summary.json",
}

# Pinned so output bytes do not change if pyarrow's default codec does.
_PARQUET_COMPRESSION = "zstd"


def write_outputs(
    out_dir: str | Path,
    requests: RequestTable,
    timeseries: TimeSeries,
    summary: dict[str, Any],
    resolved_config: dict[str, Any],
) -> dict[str, Path]:
    """Write the four output files into ``out_dir`` (created if missing).

    Returns ``{"requests", "timeseries", "config", "summary"}`` -> path
    written.  Raises ``ValueError`` if ``summary`` holds NaN or infinity.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in OUTPUT_FILES.items()}
    write_parquet(paths["requests"], requests_arrow(requests))
    write_parquet(paths["timeseries"], timeseries_arrow(timeseries))
    paths["config"].write_text(config_yaml(resolved_config), encoding="utf-8")
    paths["summary"].write_text(summary_json(summary), encoding="utf-8")
    return paths


def config_yaml(resolved_config: dict[str, Any]) -> str:
    """The text of ``config.yaml``."""
    return yaml.safe_dump(resolved_config, sort_keys=False)


def summary_json(summary: dict[str, Any]) -> str:
    """The text of ``summary.json``: sorted keys, 2-space indent, trailing newline.

    ``allow_nan=False`` because JSON has no NaN: a NaN here is a bug in
    whoever built the summary, better caught than written as invalid JSON.
    """
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"


def requests_arrow(requests: RequestTable) -> pa.Table:
    """The request rows as an Arrow table: stored columns, then derived ones."""
    cols = {**requests.columns(), **requests.derived_columns()}
    return pa.table({name: _arrow_column(col) for name, col in cols.items()})


def timeseries_arrow(timeseries: TimeSeries) -> pa.Table:
    """The time-series samples as an Arrow table."""
    return pa.table({name: _arrow_column(col) for name, col in timeseries.columns().items()})


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` with settings pinned for reproducible bytes."""
    pq.write_table(table, path, compression=_PARQUET_COMPRESSION)


def _arrow_column(col: np.ndarray) -> pa.Array:
    """A numpy column as Arrow; object columns become strings."""
    if col.dtype == object:
        return pa.array([str(v) for v in col], type=pa.string())
    return pa.array(col)
