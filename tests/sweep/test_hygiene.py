"""Sweep process hygiene: workers die with a killed coordinator; Ctrl-C says how to resume; --workers checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep_scenarios import stored_rows, tiny_base

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _slow_sweep(tmp_path: Path) -> list[str]:
    data = {"name": "slow", "base": tiny_base(num_requests=3000, rate_rps=30.0),
            "axes": [{"kind": "grid", "fields": {"seed": list(range(1, 13))}}]}
    spec = tmp_path / "slow.yaml"
    spec.write_text(yaml.safe_dump(data))
    return [sys.executable, "-m", "servesim", "sweep", str(spec), "--out", str(tmp_path / "out"),
            "--workers", "2", "--no-progress"]


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_when_the_sweep_is_killed_with_sigkill(tmp_path: Path):
    proc = subprocess.Popen(_slow_sweep(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.1)
    assert len(workers) >= 2, proc.stderr.read().decode() if proc.poll() is not None else workers
    time.sleep(1.0)  # the workers are simulating
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_ctrl_c_says_how_many_runs_are_done_and_how_to_resume(tmp_path: Path):
    proc = subprocess.Popen(_slow_sweep(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "out" / "runs"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if runs.exists() and any(not p.name.startswith(".") for p in runs.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    done = len(stored_rows(tmp_path / "out", "runs", "config_hash"))
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted: {done} of 12 runs done; "
                                            "run the same command again to resume")
    assert 1 <= done < 12


def test_negative_workers_say_what_is_allowed(tmp_path: Path):
    cmd = _slow_sweep(tmp_path)
    cmd[cmd.index("--workers") + 1] = "-3"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: option --workers -3: must be >= 0 (0: run in this process, "
                                   "N >= 1: N worker processes or Ray CPUs)")
