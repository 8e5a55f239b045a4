"""`servesim sweep` and `servesim search` from the command line: outputs, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import yaml
from typer.testing import CliRunner

from sweep_scenarios import tiny_base
from servesim.cli import app


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_sweep_cli_runs_then_resumes_with_a_base_file(tmp_path: Path):
    write(tmp_path / "base.yaml", tiny_base())
    spec = write(tmp_path / "s.yaml", {"name": "cli", "base": "base.yaml",
                                       "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 2]}}]})
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--workers", "0", "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "2 runs: 0 already recorded, 2 done, 0 failed" in first.output
    again = runner.invoke(app, ["sweep", str(spec), "--out", str(out), "--workers", "0", "--no-progress"])
    assert "2 runs: 2 already recorded, 0 done, 0 failed" in again.output
    db = duckdb.connect(str(out / "results.duckdb"), read_only=True)
    assert db.execute("SELECT value FROM meta WHERE key = 'kind'").fetchone() == ("sweep",)
    assert sorted(r[0] for r in db.execute("SELECT axis__cluster__num_replicas FROM runs").fetchall()) == [1.0, 2.0]
    db.close()


def test_search_cli_prints_the_best_plan(tmp_path: Path):
    spec = write(tmp_path / "s.yaml", {
        "name": "cli", "base": tiny_base(), "trials": 2, "sampler": {"kind": "grid"},
        "space": {"cluster.num_replicas": {"int": [1, 2]}},
        "constraints": [{"metric": "ttft_s__p99", "max": 10.0}]})
    result = CliRunner().invoke(app, ["search", str(spec), "--out", str(tmp_path / "o"), "--workers", "0",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    # Both plans meet a 10 s p99 TTFT; one H100 (2.49 USD/h) is cheaper than two.
    assert "2 trials: 2 simulated (2 feasible), 0 pruned, 0 failed" in result.output
    assert "cluster.num_replicas = 1" in result.output and "cost_usd_per_hr = 2.49" in result.output


def test_bad_specs_fail_with_one_line_naming_the_field(tmp_path: Path):
    spec = write(tmp_path / "s.yaml", {"name": "bad", "base": tiny_base(),
                                       "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [2, -1]}}]})
    proc = subprocess.run([sys.executable, "-m", "servesim", "sweep", str(spec), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cluster.num_replicas = -1" in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing ran
    spec = write(tmp_path / "s2.yaml", {"name": "bad", "axes": [{"kind": "grd", "fields": {"a": [1]}}]})
    proc = subprocess.run([sys.executable, "-m", "servesim", "sweep", str(spec)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "axes.0" in proc.stderr


def test_sweep_cli_lists_failed_runs_with_their_errors(tmp_path: Path):
    spec = write(tmp_path / "s.yaml", {"name": "cli", "base": tiny_base(),
                                       "axes": [{"kind": "grid", "fields": {"cluster.model": ["llama-3-8b", "llama-3-70b"]}}]})
    result = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"])
    assert result.exit_code == 0
    assert "2 runs: 0 already recorded, 1 done, 1 failed" in result.output
    assert "llama-3-70b does not fit on 1 x h100" in result.output


def test_sweep_on_an_existing_ray_cluster_by_address(tmp_path: Path):
    """`--ray-address`: a Ray head started apart (`ray start --head`), as on a real cluster."""
    import os
    import shutil
    import socket

    import pytest

    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    if not Path(ray_cli).exists():
        pytest.skip("no ray command-line tool")
    with socket.socket() as s:  # a free port for the head's GCS
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    started = subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2",
                              "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats"],
                             capture_output=True, text=True, env=env)
    if started.returncode != 0:
        pytest.skip(f"ray start failed: {started.stderr.strip().splitlines()[-1:]}")
    try:
        spec = write(tmp_path / "s.yaml", {"name": "remote", "base": tiny_base(),
                                           "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1, 2, 3]}}]})
        remote = subprocess.run([sys.executable, "-m", "servesim", "sweep", str(spec), "--out", str(tmp_path / "remote"),
                                 "--ray-address", f"127.0.0.1:{port}", "--no-progress"],
                                capture_output=True, text=True, env=env, timeout=300)
        assert remote.returncode == 0, remote.stderr
        assert "3 runs: 0 already recorded, 3 done, 0 failed" in remote.stdout
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env)
    local = CliRunner().invoke(app, ["sweep", str(spec), "--out", str(tmp_path / "local"), "--workers", "0", "--no-progress"])
    assert local.exit_code == 0, local.output
    query = "SELECT config_hash, ttft_s__p99, tpot_s__p99 FROM runs ORDER BY config_hash"
    rows = [duckdb.connect(str(tmp_path / d / "results.duckdb"), read_only=True).execute(query).fetchall()
            for d in ("remote", "local")]
    assert len(rows[0]) == 3 and rows[0] == rows[1]
