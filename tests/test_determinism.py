"""Same scenario and seed, same bytes; another seed, other results."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from servesim.cli import app
from servesim.metrics import RUN_VARYING_KEYS
from servesim.metrics.summary import deterministic_view

SCENARIO = {
    "name": "determinism",
    "seed": 21,
    "workload": {
        "kind": "synthetic",
        "num_requests": 250,
        "arrival": {"process": "gamma", "rate_rps": 6.0, "cv": 2.0},
        "prompt_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.9, "max": 6000},
        "output_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.8, "max": 800},
    },
    "cluster": {"engine": "pytorch", "num_replicas": 2},
    "router": {"policy": "least_outstanding"},
    "slo": {"ttft_s": 0.3, "tpot_s": 0.02},
}

BYTE_IDENTICAL = ("requests.parquet", "timeseries.parquet", "config.yaml")


def run_to(out: Path, scenario: Path, *overrides: str) -> dict:
    args = ["run", str(scenario), "--json", "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


def test_same_seed_gives_identical_outputs(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    first = run_to(tmp_path / "a", scenario)
    second = run_to(tmp_path / "b", scenario)
    for name in BYTE_IDENTICAL:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert deterministic_view(first) == deterministic_view(second)
    # Only the run-varying keys may differ, and they are all present.
    assert set(first) == set(second)
    assert set(RUN_VARYING_KEYS) <= set(first)
    assert {k for k in first if first[k] != second[k]} <= set(RUN_VARYING_KEYS)
    # The summary text itself matches once those keys are dropped.
    strip = lambda s: json.dumps(deterministic_view(s), sort_keys=True)
    assert strip(first) == strip(second)


def test_python_api_matches_the_cli(tmp_path):
    import servesim

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    from_cli = run_to(tmp_path / "cli", scenario)
    result = servesim.simulate(scenario)
    result.write(tmp_path / "api")
    for name in BYTE_IDENTICAL:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name
    assert deterministic_view(result.summary) == deterministic_view(from_cli)


def test_another_seed_changes_a_synthetic_workload(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    base = run_to(tmp_path / "a", scenario)
    other = run_to(tmp_path / "b", scenario, "seed=22")
    assert base["num_requests"] == other["num_requests"] == 250
    assert deterministic_view(base) != deterministic_view(other)
    assert base["ttft_s"]["mean"] != other["ttft_s"]["mean"]
    assert base["span_s"] != other["span_s"]
    a = pq.read_table(tmp_path / "a" / "requests.parquet")
    b = pq.read_table(tmp_path / "b" / "requests.parquet")
    assert a.column("arrival_s").to_pylist() != b.column("arrival_s").to_pylist()
    assert a.column("prompt_tokens").to_pylist() != b.column("prompt_tokens").to_pylist()
    # Only the seed differs in the resolved configs.
    ca = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    cb = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert {k for k in ca if ca[k] != cb[k]} == {"seed"}


def test_decode_stretch_does_not_change_per_request_results(tmp_path):
    # engine.* knobs must not change per-request results: the requests table is
    # byte-identical with and without stretching runs of decode iterations.
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    fast = run_to(tmp_path / "fast", scenario)
    slow = run_to(tmp_path / "slow", scenario, "engine.fast_path=false")
    name = "requests.parquet"
    assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "slow" / name).read_bytes()
    for key in ("num_finished", "ttft_s", "tpot_s", "e2e_s", "span_s", "output_tokens_per_s", "num_steps", "slo"):
        assert fast[key] == slow[key], key
