"""The result store: flattening, column types, rows replaced in one transaction, meta; the progress bar."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from servesim.sweep.executors import RunOutcome, one_line
from servesim.errors import DeploymentError
from servesim.sweep.progress import SweepProgress
from servesim.sweep.store import ResultStore, axis_column, flatten_summary, table_rows


def test_flatten_summary_joins_keys_and_leaves_lists_out():
    summary = {"ttft_s": {"p99": 0.5, "count": 3}, "slo": {"targets": {"ttft_s": None}}, "name": "x",
               "utilization": {"per_replica": [0.1, 0.2], "mean": 0.15}, "ok": True}
    assert flatten_summary(summary) == {"ttft_s__p99": 0.5, "ttft_s__count": 3, "slo__targets__ttft_s": None,
                                        "name": "x", "utilization__mean": 0.15, "ok": True}
    assert axis_column("cluster.disaggregation.prefill_replicas") == "axis__cluster__disaggregation__prefill_replicas"


def test_rows_columns_and_replacement(tmp_path: Path):
    store = ResultStore(tmp_path)
    store.commit_run("a" * 16, "{}", {"cluster.hardware": "h100", "seed": 1},
                     RunOutcome("a" * 16, "done", None, 0.5, {"ttft_s": {"p99": 0.25}, "flag": True},
                                {"summary.json": b"{}\n"}))
    store.commit_run("b" * 16, "{}", {"cluster.hardware": "a100", "seed": 2},
                     RunOutcome("b" * 16, "failed", "boom", 0.1))
    # A later run brings a metric the first did not have: a new column, NULL in the earlier rows.
    store.commit_run("c" * 16, "{}", {"cluster.hardware": "l4", "seed": 3},
                     RunOutcome("c" * 16, "done", None, 0.2, {"ttft_s": {"p99": 1.0}, "energy_j": 7}, {}))
    types = dict(store.db.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'runs'").fetchall())
    assert types["axis__cluster__hardware"] == "VARCHAR" and types["axis__seed"] == "DOUBLE"
    assert types["ttft_s__p99"] == "DOUBLE" and types["flag"] == "BOOLEAN" and types["energy_j"] == "DOUBLE"
    rows = {r["config_hash"][0]: r for r in table_rows(store.db, "runs")}
    assert rows["a"]["energy_j"] is None and rows["c"]["energy_j"] == 7.0
    assert rows["b"]["status"] == "failed" and rows["b"]["error"] == "boom" and rows["b"]["ttft_s__p99"] is None
    assert (tmp_path / "runs" / ("a" * 16) / "summary.json").read_bytes() == b"{}\n"
    assert not (tmp_path / "runs" / ("b" * 16)).exists()
    # Retrying the failed run replaces its row: still one row per hash.
    store.commit_run("b" * 16, "{}", {"cluster.hardware": "a100", "seed": 2},
                     RunOutcome("b" * 16, "done", None, 0.3, {"ttft_s": {"p99": 0.75}}, {}))
    assert store.statuses() == {"a" * 16: "done", "b" * 16: "done", "c" * 16: "done"}
    assert store.run_row("b" * 16)["ttft_s__p99"] == 0.75
    assert not list((tmp_path / "runs").glob(".tmp-*"))
    store.set_meta({"kind": "sweep"})
    store.set_meta({"kind": "search"})
    assert store.db.execute("SELECT * FROM meta").fetchall() == [("kind", "search")]
    store.close()


def test_one_line_errors():
    assert one_line(DeploymentError("does not fit\nmore")) == "does not fit"
    assert one_line(KeyError("x")) == "KeyError: 'x'"


def test_progress_shows_done_failed_and_remaining():
    out = io.StringIO()
    bar = SweepProgress(5, console=Console(file=out, force_terminal=True, width=120))
    bar.advance(failed=False)
    bar.advance(failed=False)
    bar.advance(failed=True)
    bar.close()
    assert (bar.done, bar.failed, bar.remaining) == (2, 1, 2)
    assert "done 2  failed 1  remaining 2" in out.getvalue()
