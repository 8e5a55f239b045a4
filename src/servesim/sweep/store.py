"""The sweep's results: a DuckDB database and each run's files beside it.

Layout of an output folder ``DIR`` (docs/sweeps.md, shared with ``servesim report``):

* ``DIR/results.duckdb``, table ``runs``: ``config_hash VARCHAR PRIMARY KEY``,
  ``status`` ('done' | 'failed'), ``error`` (one line; NULL when done),
  ``wall_s``, ``finished_at`` (unix time), ``config_json``, one
  ``axis__<field with '.' -> '__'>`` column per swept field, and one column
  per scalar summary metric flattened with '__' (``ttft_s__p99``); NULL
  when failed.  Search adds ``trials``; both add ``meta`` (key, value).
* ``DIR/runs/<config_hash>/``: the run's files as ``Result.write`` wrote them.

Only the coordinating process writes.  A run is committed in two steps, each
atomic: its files are written to ``DIR/runs/.tmp-<hash>`` and renamed to
``DIR/runs/<hash>``, then its row is inserted in one transaction.  The row is
what marks a run done: a sweep killed between the two steps leaves a folder
without a row, which the next run of the sweep replaces.  So no result is
lost or counted twice.

Column types: numbers DOUBLE, booleans BOOLEAN, anything else VARCHAR
(lists and mappings as JSON).  Metric columns appear as runs bring them
(``ALTER TABLE ... ADD COLUMN``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from servesim.errors import ConfigError

DB_NAME = "results.duckdb"
RUNS_DIR = "runs"
_FIXED = {
    "config_hash": "VARCHAR PRIMARY KEY",
    "status": "VARCHAR",
    "error": "VARCHAR",
    "wall_s": "DOUBLE",
    "finished_at": "DOUBLE",
    "config_json": "VARCHAR",
}


def axis_column(field: str) -> str:
    """``cluster.num_replicas`` -> ``axis__cluster__num_replicas``."""
    return "axis__" + field.replace(".", "__")


def flatten_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of the summary keyed by their path joined with '__'; lists are left out."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_summary(value, name + "__"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
    return out


def sql_type(value: Any) -> str:
    """The column type for a value (see the module docstring)."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "DOUBLE"
    return "VARCHAR"


def _sql_value(value: Any, column_type: str) -> Any:
    """``value`` as stored in a column of ``column_type``."""
    if value is None:
        return None
    if column_type == "VARCHAR":
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if column_type == "DOUBLE":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else None
        return None  # a value of another kind where numbers were seen first
    return value if isinstance(value, bool) else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ResultStore:
    """The output folder of one sweep or search, opened by its coordinating process.

    ``ConfigError`` if the folder cannot be created or the database cannot be opened (e.g.
    another sweep holds it).  ``servesim.out_dir.check_sweep_dir`` checks what the folder
    holds first.
    """

    def __init__(self, out_dir: str | Path) -> None:
        import duckdb

        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / RUNS_DIR
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create {self.runs_dir}: {err.strerror or err}") from None
        try:
            self.db = duckdb.connect(str(self.out_dir / DB_NAME))
        except duckdb.Error as err:
            raise ConfigError(f"cannot open {self.out_dir / DB_NAME}: {str(err).splitlines()[0]}") from None
        columns = ", ".join(f"{_quote(k)} {v}" for k, v in _FIXED.items())
        self.db.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self._columns = self._table_columns("runs")

    # ------------------------------------------------------------ reading
    def statuses(self) -> dict[str, str]:
        """config_hash -> status of every recorded run."""
        return dict(self.db.execute("SELECT config_hash, status FROM runs").fetchall())

    def run_row(self, config_hash: str) -> dict[str, Any] | None:
        """The recorded row of a run, or None."""
        cursor = self.db.execute("SELECT * FROM runs WHERE config_hash = ?", [config_hash])
        rows = cursor.fetchall()  # all of them: DuckDB 2 wants a result finished before other work
        if not rows:
            return None
        return dict(zip([d[0] for d in cursor.description], rows[0]))

    def run_dir(self, config_hash: str) -> Path:
        """Where a run's files live."""
        return self.runs_dir / config_hash

    # ------------------------------------------------------------ writing
    def set_meta(self, items: dict[str, str]) -> None:
        """Insert or replace meta rows."""
        with self._transaction():
            for key, value in items.items():
                self.db.execute("DELETE FROM meta WHERE key = ?", [key])
                self.db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])

    def commit_run(
        self,
        config_hash: str,
        config_json: str,
        axes: dict[str, Any],
        outcome: Any,
    ) -> None:
        """Record one run (a ``RunOutcome``): files first (temp folder, rename), then its row in one
        transaction, replacing a previous row of the same hash (a failed run retried)."""
        final = self.run_dir(config_hash)
        if outcome.status == "done":
            tmp = self.runs_dir / f".tmp-{config_hash}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            for name, data in outcome.files.items():
                (tmp / name).write_bytes(data)
            if final.exists():  # left by a sweep killed before it recorded the row
                shutil.rmtree(final)
            tmp.rename(final)
        row: dict[str, Any] = {
            "config_hash": config_hash,
            "status": outcome.status,
            "error": outcome.error,
            "wall_s": outcome.wall_s,
            "finished_at": time.time(),
            "config_json": config_json,
        }
        row.update({axis_column(k): v for k, v in axes.items()})
        if outcome.summary is not None:
            row.update(flatten_summary(outcome.summary))
        self._insert("runs", row, self._columns, replace_key="config_hash")

    def close(self) -> None:
        """Close the database (checkpointing it)."""
        self.db.close()

    # ------------------------------------------------------------ helpers
    def _table_columns(self, table: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {name: kind for name, kind in rows}

    def _insert(self, table: str, row: dict[str, Any], columns: dict[str, str], replace_key: str | None = None) -> None:
        """Insert ``row`` in one transaction, adding columns it brings (typed by its values)."""
        with self._transaction():
            for name, value in row.items():
                if name not in columns:
                    columns[name] = sql_type(value) if value is not None else "DOUBLE"
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(name)} {columns[name]}")
            if replace_key is not None:
                self.db.execute(f"DELETE FROM {table} WHERE {_quote(replace_key)} = ?", [row[replace_key]])
            names = list(row)
            values = [_sql_value(row[n], columns[n]) for n in names]
            marks = ", ".join("?" for _ in names)
            self.db.execute(f"INSERT INTO {table} ({', '.join(_quote(n) for n in names)}) VALUES ({marks})", values)

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    """BEGIN ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN TRANSACTION")

    def __exit__(self, kind, *rest) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")


def table_rows(db, table: str, order_by: str | None = None) -> list[dict[str, Any]]:
    """Every row of ``table`` as a dict (tests and the search's summaries)."""
    cursor = db.execute(f"SELECT * FROM {table}" + (f" ORDER BY {order_by}" if order_by else ""))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
