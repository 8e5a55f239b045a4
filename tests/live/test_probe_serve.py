"""``servesim probe`` -> ``servesim calibrate`` against an engine whose step times are known:
``servesim serve`` of a scenario with a given calibration (a separate process, as a real engine
would be).  The probe must recover the steps the emulated engine was told to take, and the
calibration fitted to the probe must predict them."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from live.replay_fakes import free_port

from servesim.cli import app
from servesim.config import load_config
from servesim.perf.calibration_file import Calibration, calibration_yaml, load_calibration
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import read_steps_csv
from servesim.perf.steptime_params import StepTimeParams

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "benchmarks" / "data" / "tiny-llama" / "config.json"
FRONTEND_S = 0.02
# Steps of about 8 ms (a decode of one) to 0.3 s (a 2,047-token prompt): long beside the
# client's and the emulated engine's timing jitter (a millisecond or two).
TRUTH = {"gemm_efficiency": 0.1, "mem_bw_efficiency": 0.5, "elementwise_bw_efficiency": 0.3,
         "attn_flops_efficiency": 0.05, "attn_bw_efficiency": 0.3, "per_layer_launch_eager_s": 1e-4,
         "per_seq_attention_launch_s": 5e-5, "cpu_gpu_overlap": 0.05, "fixed_step_overhead_s": 6e-3}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A servesim serve process of the tiny model on a CPU device with the TRUTH step costs."""
    yield from _serve(tmp_path_factory.mktemp("probe-serve"))


@pytest.fixture(scope="module")
def served_fresh(tmp_path_factory):
    """Another such process, untouched by the probe's mixed sessions (whose blocker streams,
    cancelled by the client, run on to their end in servesim serve)."""
    yield from _serve(tmp_path_factory.mktemp("probe-serve-fresh"))


def _serve(work: Path):
    runner = CliRunner()
    # The catalog entry comes from config.json the way a user gets it: probe --model-config writes it.
    from servesim.perf.hf_config import model_entry_from_hf_config

    catalog = work / "tiny.catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": {"tiny-llama": model_entry_from_hf_config(TINY_CONFIG, "tiny-llama")}}))
    truth = work / "truth.yaml"
    truth.write_text(calibration_yaml(Calibration("cpu-core", TRUTH, frontend_latency_s=FRONTEND_S)))
    scenario = work / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({
        "catalog": {"files": [str(catalog)]}, "calibration": str(truth),
        "cluster": {"engine": "vllm", "model": "tiny-llama", "hardware": "cpu-core", "max_model_len": 2048,
                    "prefix_caching": False},
        "scheduler": {"max_num_seqs": 8, "max_num_batched_tokens": 2048},
    }))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "servesim", "serve", str(scenario), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"servesim serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield work, f"http://127.0.0.1:{port}", proc.pid, runner, scenario
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


@pytest.fixture(scope="module")
def probed(served):
    work, url, pid, runner, _ = served
    steps = work / "steps.csv"
    result = runner.invoke(app, ["probe", "--endpoint", url, "-o", str(steps), "--model-config", str(TINY_CONFIG),
                                 "--catalog-model", "tiny-llama", "--max-batch", "8", "--quick", "--repeats", "1",
                                 "--server-pid", str(pid)])
    assert result.exit_code == 0, result.output
    return steps


def test_probe_recovers_the_emulated_engines_steps(probed):
    table = read_steps_csv(probed, require_measured=True)
    expected = StepPricer(table.rows, _cpu(), _catalog(probed.parent)).times_s(StepTimeParams(**TRUTH))
    measured = np.array([row.measured_s for row in table.rows])
    ratio = measured / expected
    kinds = {row.kind for row in table.rows}
    assert kinds == {"decode", "mixed"} and len(table.rows) >= 11
    # Every step the engine was told to take comes back within 15% (the median within 5%).
    assert np.median(np.abs(ratio - 1)) < 0.05, list(zip([r.label() for r in table.rows], ratio))
    assert np.abs(ratio - 1).max() < 0.15, list(zip([r.label() for r in table.rows], ratio))
    with probed.open() as handle:
        frontend_ms = {float(r["frontend_ms"]) for r in csv.DictReader(handle)}
    # The front end's time is the emulated 20 ms plus the real HTTP path (a new connection,
    # FastAPI, the wall-clock engine's arrival handling: 5-30 ms on two busy cores).
    assert len(frontend_ms) == 1 and FRONTEND_S * 1e3 - 2 < frontend_ms.pop() < FRONTEND_S * 1e3 + 40


def test_calibrating_on_the_probe_predicts_the_engine(served, probed, tmp_path):
    work, *_ , runner, _scenario = served
    cal = tmp_path / "cal.yaml"
    result = runner.invoke(app, ["calibrate", str(probed), "--hardware", "cpu-core", "--catalog",
                                 str(probed.with_suffix(".catalog.yaml")), "--step-overhead", "-o", str(cal)])
    assert result.exit_code == 0, result.output
    fitted = load_calibration(cal)
    assert FRONTEND_S - 0.002 < fitted.frontend_latency_s < FRONTEND_S + 0.04  # as above
    table = read_steps_csv(probed, require_measured=True)
    catalog = _catalog(work)
    truth = StepPricer(table.rows, _cpu(), catalog).times_s(StepTimeParams(**TRUTH))
    predicted = StepPricer(table.rows, _cpu(), catalog).times_s(StepTimeParams(**fitted.params))
    assert np.median(np.abs(predicted / truth - 1)) < 0.05


def _catalog(work: Path):
    """The served scenario's catalog (the packaged one plus the tiny model)."""
    from servesim.api import build_catalog

    return build_catalog(load_config(work / "scenario.yaml", []))


def _cpu():
    from servesim.perf import Catalog

    return Catalog.default().hardware("cpu-core")


def test_recheck_finds_the_same_engine_unchanged(served_fresh, probed, tmp_path):
    # The earlier record is the other process's probe: the same step costs, so no drift.
    _, url, pid, runner, _ = served_fresh
    result = runner.invoke(app, ["probe", "--endpoint", url, "--max-batch", "8", "--quick", "--repeats", "1",
                                 "--server-pid", str(pid), "--recheck", str(probed), "-o", str(tmp_path / "again.csv")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "again.probe.json").read_text())["recheck"]
    # Decode batches 1, 4 and 8 at the middle context, and the two longest prompts behind one stream.
    assert sorted(report["rows"]) == ["1x2047 prompt + 1 decode", "1x512 prompt + 1 decode", "decode 1x512",
                                      "decode 4x512", "decode 8x512"]
    assert abs(report["drift_pct"]) < 10, report
    assert "drift since" in result.output


def test_drift_is_the_median_ratio_of_matching_rows():
    from servesim.errors import ConfigError
    from servesim.live.probe import drift

    recorded = [{"probe": "decode 1x512", "median_ms": "10"}, {"probe": "decode 4x512", "median_ms": "20"},
                {"probe": "decode 8x512", "median_ms": "40"}, {"probe": "idle", "median_ms": ""}]
    measured = [{"probe": "decode 1x512", "median_ms": "11"}, {"probe": "decode 4x512", "median_ms": "18"},
                {"probe": "decode 8x512", "median_ms": "48"}, {"probe": "decode 16x512", "median_ms": "99"}]
    # Ratios 1.1, 0.9, 1.2 (16x512 has no record): median 1.1, so +10%.
    result = drift(recorded, measured)
    assert result["rows"] == {"decode 1x512": 1.1, "decode 4x512": 0.9, "decode 8x512": 1.2}
    assert result["drift_pct"] == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="--recheck"):
        drift(recorded, [{"probe": "decode 2x16", "median_ms": "5"}])


def test_recheck_of_a_bad_file_is_one_line(served, tmp_path, capsys):
    from cli_errors import one_line

    _, url, _, _, _ = served
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,median_ms\ndecode,abc\n")
    line = one_line(capsys, "probe", "--endpoint", url, "--recheck", str(bad), "-o", str(tmp_path / "x.csv"))
    assert str(bad) in line and not (tmp_path / "x.csv").exists()
