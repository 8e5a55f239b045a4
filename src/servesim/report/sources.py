"""What ``servesim report`` reads: a run's output folder or a sweep's.

A run's folder is what ``Result.write`` (``servesim run --out DIR``) writes:
``summary.json``, ``requests.parquet``, ``timeseries.parquet`` and
``config.yaml``, and, when the run had them, ``kvcache_timeseries.parquet``,
``fleet_timeseries.parquet``, ``power_timeseries.parquet`` and
``programs.parquet``.  Only ``summary.json`` is required; a missing optional
table is None and its charts are left out.

A sweep or search folder holds ``results.duckdb`` (docs/sweeps.md): table
``runs`` (one row per run), for a search ``trials``, and ``meta`` (``kind``,
``spec_json``).  It is opened read-only, so a report can be made while a
sweep still runs elsewhere.

Anything unreadable is a ``ConfigError`` naming the path: one line, no traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.errors import ConfigError

#: The optional tables of a run's folder (file stem) that the report draws.
OPTIONAL_TABLES = ("kvcache_timeseries", "fleet_timeseries", "power_timeseries", "programs")
DB_NAME = "results.duckdb"

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class RunData:
    """One run's outputs, as columns (numpy arrays by name)."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any] | None
    requests: Columns | None
    timeseries: Columns | None
    tables: dict[str, Columns] = field(default_factory=dict)  # the OPTIONAL_TABLES found

    @property
    def name(self) -> str:
        """The scenario's name (config.yaml), else the folder's."""
        return str((self.config or {}).get("name") or self.path.name)


@dataclass(frozen=True)
class SweepData:
    """A sweep's or search's results: the ``runs`` rows, ``trials`` rows (search) and meta."""

    path: Path
    kind: str  # 'sweep' | 'search'
    runs: list[dict[str, Any]]
    run_columns: list[str]
    trials: list[dict[str, Any]] | None
    trial_columns: list[str]
    spec: dict[str, Any] | None

    @property
    def name(self) -> str:
        return str((self.spec or {}).get("name") or self.path.name)

    @property
    def axis_columns(self) -> list[str]:
        """The swept fields' columns (``axis__cluster__num_replicas``), in table order."""
        return [c for c in self.run_columns if c.startswith("axis__")]


def load(path: str | Path) -> RunData | SweepData:
    """The run or sweep at ``path``; ``ConfigError`` if it is neither or cannot be read."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"report PATH {p}: no such file or folder")
    if not p.is_dir():
        raise ConfigError(f"report PATH {p}: not a folder (give a run's --out folder or a sweep's output folder)")
    if (p / DB_NAME).is_file():
        return load_sweep(p)
    if (p / "summary.json").is_file():
        return load_run(p)
    raise ConfigError(
        f"report PATH {p}: holds neither summary.json (a run's --out folder) nor {DB_NAME} (a sweep's or search's)"
    )


def load_run(path: Path) -> RunData:
    """A run's folder (see the module docstring)."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"report PATH {path}: cannot read summary.json: {_first_line(err)}") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"report PATH {path}: summary.json is not a JSON object")
    tables = {stem: _parquet(path / f"{stem}.parquet") for stem in OPTIONAL_TABLES}
    return RunData(
        path=path,
        summary=summary,
        config=_yaml(path / "config.yaml"),
        requests=_parquet(path / "requests.parquet"),
        timeseries=_parquet(path / "timeseries.parquet"),
        tables={k: v for k, v in tables.items() if v is not None},
    )


def load_sweep(path: Path) -> SweepData:
    """A sweep's or search's folder: its database opened read-only."""
    import duckdb  # here, not at import: plain runs never pay for it

    db_path = path / DB_NAME
    try:
        db = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error as err:
        raise ConfigError(f"report PATH {path}: cannot open {DB_NAME}: {_first_line(err)}") from None
    try:
        names = {row[0] for row in db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "runs" not in names:
            raise ConfigError(f"report PATH {path}: {DB_NAME} has no table 'runs'")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if "meta" in names else {}
        runs, run_columns = _rows(db, "SELECT * FROM runs ORDER BY finished_at, config_hash")
        trials, trial_columns = (_rows(db, "SELECT * FROM trials ORDER BY trial") if "trials" in names else (None, []))
    except duckdb.Error as err:
        raise ConfigError(f"report PATH {path}: cannot read {DB_NAME}: {_first_line(err)}") from None
    finally:
        db.close()
    kind = meta.get("kind") or ("search" if trials is not None else "sweep")
    return SweepData(path, kind, runs, run_columns, trials, trial_columns, _json_or_none(meta.get("spec_json")))


def finished_mask(requests: Columns) -> np.ndarray:
    """Requests that finished (``status == 0``, ``servesim.metrics.records.FINISHED``)."""
    return np.asarray(requests["status"]) == 0


def _rows(db: Any, sql: str) -> tuple[list[dict[str, Any]], list[str]]:
    cursor = db.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()], columns


def _parquet(file: Path) -> Columns | None:
    """A Parquet file's columns as numpy arrays; None when the file is absent."""
    if not file.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ConfigError(f"report PATH {file.parent}: cannot read {file.name}: {_first_line(err)}") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _yaml(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"report PATH {file.parent}: cannot read {file.name}: {_first_line(err)}") from None
    return data if isinstance(data, dict) else None


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
