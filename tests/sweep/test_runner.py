"""Sweeps end to end: inline, local processes and Ray; resume after a kill; failed runs recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep_scenarios import stored_rows, tiny_base
from servesim.api import simulate
from servesim.metrics.summary import RUN_VARYING_KEYS
from servesim.sweep.axes import build_runs
from servesim.sweep.executors import InlineExecutor, LocalExecutor
from servesim.sweep.runner import run_sweep
from servesim.sweep.spec import SweepSpec, parse_spec
from servesim.sweep.store import flatten_summary

# Host-dependent columns: everything else must match between executors and across a resume.
_VARYING = {"wall_s", "finished_at", *RUN_VARYING_KEYS}


def spec(axes=None, base=None) -> SweepSpec:
    axes = axes or [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 2]}},
                    {"kind": "zip", "fields": {"workload.arrival.rate_rps": [4.0, 16.0], "seed": [1, 2]}}]
    return parse_spec({"name": "t", "base": base or tiny_base(), "axes": axes}, SweepSpec)


def rows(out: Path) -> list[dict]:
    return stored_rows(out, "runs", "config_hash")


def stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in _VARYING}


def test_inline_sweep_records_every_run_as_simulate_computes_it(tmp_path: Path):
    s = spec()
    report = run_sweep(s, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    assert (report.total, report.skipped, report.done, report.failed) == (4, 0, 4, 0)
    got = {r["config_hash"]: r for r in rows(tmp_path / "out")}
    for run in build_runs(s.axes, s.base, tmp_path):
        row = got[run.config_hash]
        assert row["status"] == "done" and row["error"] is None
        assert row["axis__cluster__num_replicas"] == run.assignment["cluster.num_replicas"]
        assert json.loads(row["config_json"]) == run.config.to_dict()
        summary = flatten_summary(simulate(run.config).summary)
        assert row["ttft_s__p99"] == summary["ttft_s__p99"]
        assert row["slo__attainment"] == summary["slo__attainment"]
        assert row["cost__usd"] == summary["cost__usd"]
        files = {p.name for p in (tmp_path / "out" / "runs" / run.config_hash).iterdir()}
        assert files == {"summary.json", "requests.parquet", "timeseries.parquet", "config.yaml"}
    # Run again: everything is recorded, nothing runs.
    again = run_sweep(s, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    assert (again.skipped, again.done, again.failed) == (4, 0, 0)
    assert len(rows(tmp_path / "out")) == 4


def test_local_processes_give_the_inline_results(tmp_path: Path):
    s = spec()
    run_sweep(s, tmp_path, tmp_path / "inline", InlineExecutor(), progress=False)
    executor = LocalExecutor(2)
    try:
        report = run_sweep(s, tmp_path, tmp_path / "local", executor, progress=False)
    finally:
        executor.close()
    assert (report.done, report.failed) == (4, 0)
    assert [stable(r) for r in rows(tmp_path / "local")] == [stable(r) for r in rows(tmp_path / "inline")]
    for r in rows(tmp_path / "inline"):
        h = r["config_hash"]
        assert (tmp_path / "local/runs" / h / "requests.parquet").read_bytes() == \
            (tmp_path / "inline/runs" / h / "requests.parquet").read_bytes()


def test_failed_runs_are_recorded_with_their_one_line_error(tmp_path: Path, monkeypatch):
    # llama-3-70b on one H100 validates but cannot be deployed (141 GB of weights on an 80 GB GPU).
    s = spec(axes=[{"kind": "grid", "fields": {"cluster.model": ["llama-3-8b", "llama-3-70b"]}}])
    report = run_sweep(s, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    assert (report.done, report.failed) == (1, 1)
    by_model = {r["axis__cluster__model"]: r for r in rows(tmp_path / "out")}
    failed = by_model["llama-3-70b"]
    assert failed["status"] == "failed" and "does not fit" in failed["error"] and "\n" not in failed["error"]
    assert failed["ttft_s__p99"] is None
    assert not (tmp_path / "out/runs" / failed["config_hash"]).exists()
    # Any exception, not only servesim's, becomes a failed run: TypeName: message.
    import servesim.api

    def broken(config):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(servesim.api, "simulate", broken)
    report = run_sweep(s, tmp_path, tmp_path / "out", InlineExecutor(), progress=False, retry_failed=True)
    assert (report.skipped, report.failed) == (1, 1)
    by_model = {r["axis__cluster__model"]: r for r in rows(tmp_path / "out")}
    assert by_model["llama-3-70b"]["error"] == "ValueError: boom"
    assert by_model["llama-3-8b"]["status"] == "done"


def _kill_spec(tmp_path: Path) -> Path:
    base = tiny_base(num_requests=150)
    data = {"name": "kill", "base": base,
            "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 2, 3], "seed": [1, 2, 3, 4]}}]}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep_cli(spec_path: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "servesim", "sweep", str(spec_path), "--out", str(out),
            "--workers", str(workers), "--no-progress"]


def test_a_sweep_killed_midway_resumes_without_losing_or_duplicating_runs(tmp_path: Path):
    spec_path = _kill_spec(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(_sweep_cli(spec_path, out, 1), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # Kill the whole process group (coordinator and worker) once two runs have their files.
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "runs").exists() and len([p for p in (out / "runs").iterdir() if not p.name.startswith(".")]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = rows(out)
    assert 0 < len(recorded) < 12  # killed midway
    resumed = subprocess.run(_sweep_cli(spec_path, out, 2), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(recorded)} already recorded" in resumed.stdout
    after = rows(out)
    # Every run exactly once, with the results of an uninterrupted sweep.
    reference = tmp_path / "ref"
    s = parse_spec(yaml.safe_load(spec_path.read_text()), SweepSpec)
    run_sweep(s, tmp_path, reference, InlineExecutor(), progress=False)
    want = rows(reference)
    assert len(after) == 12 and len({r["config_hash"] for r in after}) == 12
    assert [stable(r) for r in after] == [stable(r) for r in want]
    for r in want:
        h = r["config_hash"]
        assert (out / "runs" / h / "requests.parquet").read_bytes() == (reference / "runs" / h / "requests.parquet").read_bytes()
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r["config_hash"] for r in want)


def test_a_crash_between_files_and_row_is_redone(tmp_path: Path):
    # The files of a run were renamed into place but the process died before its row was inserted.
    s = spec()
    out = tmp_path / "out"
    first = build_runs(s.axes, s.base, tmp_path)[0]
    stale = out / "runs" / first.config_hash
    stale.mkdir(parents=True)
    (stale / "partial.txt").write_text("left by a killed sweep")
    report = run_sweep(s, tmp_path, out, InlineExecutor(), progress=False)
    assert (report.skipped, report.done) == (0, 4)
    assert not (stale / "partial.txt").exists() and (stale / "summary.json").exists()




@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_inline_results(tmp_path: Path, local_ray):
    from servesim.sweep.executors import RayExecutor

    s = spec()
    run_sweep(s, tmp_path, tmp_path / "inline", InlineExecutor(), progress=False)
    executor = RayExecutor(2)  # joins the fixture's instance
    try:
        report = run_sweep(s, tmp_path, tmp_path / "ray", executor, progress=False)
    finally:
        executor.close()
    assert local_ray.is_initialized()  # not ours to shut down
    assert (report.done, report.failed) == (4, 0)
    assert [stable(r) for r in rows(tmp_path / "ray")] == [stable(r) for r in rows(tmp_path / "inline")]
