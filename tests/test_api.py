"""servesim.simulate(): its inputs, hand-computed results with a fake step model, outputs, horizons."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from fakes import LinearStepModel

import servesim
from servesim import Request, Workload
from servesim.config import ScenarioConfig, load_config
from servesim.metrics import FINISHED, IN_FLIGHT, deterministic_view

SCENARIO = {
    "name": "api",
    "seed": 2,
    "workload": {
        "kind": "synthetic",
        "num_requests": 60,
        "arrival": {"process": "poisson", "rate_rps": 4.0},
        "prompt_tokens": {"dist": "uniform", "low": 20, "high": 600},
        "output_tokens": {"dist": "uniform", "low": 2, "high": 60},
    },
    # The plain harness: steps are what the hand-computed expectations below add up.
    "cluster": {"engine": "pytorch"},
}


def test_simulate_accepts_dict_path_and_config(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    by_dict = servesim.simulate(SCENARIO)
    by_path = servesim.simulate(path)
    by_str = servesim.simulate(str(path))
    by_config = servesim.simulate(load_config(path))
    expected = deterministic_view(by_dict.summary)
    assert expected["num_requests"] == 60
    for other in (by_path, by_str, by_config):
        assert deterministic_view(other.summary) == expected
        assert other.config == by_dict.config
    assert isinstance(by_dict.config, ScenarioConfig)
    assert isinstance(by_dict, servesim.Result)


def test_simulate_rejects_other_types():
    with pytest.raises(servesim.ConfigError, match="takes a ScenarioConfig, a dict or a file path, not int"):
        servesim.simulate(3)  # type: ignore[arg-type]


def test_simulate_bad_dict_is_a_config_error():
    with pytest.raises(servesim.ConfigError, match=r"^config error: cluster\.num_replicas = 0: "):
        servesim.simulate({"cluster": {"num_replicas": 0}})


def test_workload_replaces_the_configured_one():
    requests = [Request(0.0, 50, 4), Request(0.2, 80, 3), Request(0.1, 30, 2)]
    result = servesim.simulate(SCENARIO, workload=Workload.from_requests(requests))
    assert result.summary["num_requests"] == 3
    assert result.summary["num_finished"] == 3
    table = result.requests
    # Sorted by arrival, lengths carried through.
    assert list(table.arrival_s) == [0.0, 0.1, 0.2]
    assert list(table.prompt_tokens) == [50, 30, 80]
    assert list(table.output_tokens) == [4, 2, 3]
    assert list(table.tokens_generated) == [4, 2, 3]


def test_lone_request_with_linear_step_model_is_hand_computed():
    # Prefill of 100 tokens: 0.01 + 0.001 * 100 = 0.11 s, which also gives the
    # first token.  Each of the 4 remaining tokens is a 1-sequence decode step:
    # 0.01 + 0.001 * 1 = 0.011 s.
    workload = Workload.from_requests([Request(0.0, prompt_tokens=100, output_tokens=5)])
    result = servesim.simulate(SCENARIO, workload=workload, step_model=LinearStepModel())
    s = result.summary
    assert s["num_requests"] == s["num_finished"] == 1
    assert s["ttft_s"]["mean"] == 0.01 + 0.001 * 100
    assert s["ttft_s"]["mean"] == pytest.approx(0.11, rel=1e-15)
    assert s["e2e_s"]["mean"] == pytest.approx(0.11 + 4 * 0.011, rel=1e-12)
    assert s["tpot_s"]["mean"] == pytest.approx(0.011, rel=1e-12)
    assert s["queue_delay_s"]["mean"] == 0.0
    assert s["num_steps"] == 5
    assert s["span_s"] == pytest.approx(0.154, rel=1e-12)
    assert s["output_tokens_per_s"] == pytest.approx(5 / 0.154, rel=1e-12)
    assert s["requests_per_s"] == pytest.approx(1 / 0.154, rel=1e-12)
    assert result.requests.status[0] == FINISHED


def test_step_model_is_used_instead_of_the_real_one():
    workload = Workload.from_requests([Request(0.0, 100, 5)])
    slow = servesim.simulate(SCENARIO, workload=workload, step_model=LinearStepModel(base_s=1.0))
    assert slow.summary["ttft_s"]["mean"] == pytest.approx(1.1)
    real = servesim.simulate(SCENARIO, workload=workload)
    assert real.summary["ttft_s"]["mean"] < 0.5


def test_result_write_writes_the_four_files(tmp_path):
    result = servesim.simulate(SCENARIO)
    paths = result.write(tmp_path / "nested" / "out")
    assert set(paths) == {"requests", "timeseries", "config", "summary"}
    assert {p.name for p in paths.values()} == {
        "requests.parquet",
        "timeseries.parquet",
        "config.yaml",
        "summary.json",
    }
    assert all(p.is_file() for p in paths.values())
    assert json.loads(paths["summary"].read_text()) == result.summary
    assert ScenarioConfig.model_validate(yaml.safe_load(paths["config"].read_text())) == result.config
    table = pq.read_table(paths["requests"])
    assert table.num_rows == 60
    assert table.column("ttft_s").to_numpy() == pytest.approx(result.requests.ttft_s())
    assert pq.read_table(paths["timeseries"]).num_rows == len(result.timeseries)


def test_horizon_leaves_requests_in_flight_and_books_balance(monkeypatch):
    import servesim.api as api

    checked = []
    real_check = api.check_conservation

    def spy(table, replicas, horizon_s, retired=(), **books):
        real_check(table, replicas, horizon_s, retired, **books)  # raises InvariantError if the books do not balance
        checked.append(len(table))

    monkeypatch.setattr(api, "check_conservation", spy)
    # 0.0: 100 prompt + 5 output, done at 0.154 s.  0.5: 4000 output tokens,
    # still decoding at 1.0 s.  2.0: after the horizon, never arrives.
    workload = Workload.from_requests([Request(0.0, 100, 5), Request(0.5, 100, 4000), Request(2.0, 10, 2)])
    config = {**SCENARIO, "horizon_s": 1.0}
    result = servesim.simulate(config, workload=workload, step_model=LinearStepModel())
    s = result.summary
    assert checked == [2]
    assert s["horizon_s"] == 1.0
    assert s["sim_time_s"] <= 1.0
    assert s["num_requests"] == 2
    assert s["num_finished"] == 1
    assert s["num_in_flight"] == 1
    assert s["num_in_flight"] > 0
    assert s["num_finished"] + s["num_rejected"] + s["num_in_flight"] == s["num_requests"]
    table = result.requests
    assert list(table.status) == [FINISHED, IN_FLIGHT]
    assert 0 < table.tokens_generated[1] < table.output_tokens[1]
    # Latency statistics cover finished requests only.
    assert s["e2e_s"]["count"] == 1 and s["e2e_s"]["mean"] == pytest.approx(0.154)
    # An in-flight request counts as a miss (attainment is over all requests).
    assert s["slo"]["num_met"] == 1 and s["slo"]["attainment"] == 0.5
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_horizon_on_a_synthetic_workload():
    config = {**SCENARIO, "horizon_s": 5.0}
    config["workload"] = {**SCENARIO["workload"], "output_tokens": {"dist": "fixed", "value": 2000}}
    s = servesim.simulate(config).summary
    assert s["num_in_flight"] > 0
    assert s["num_finished"] + s["num_rejected"] + s["num_in_flight"] == s["num_requests"]
    assert s["num_requests"] < 60  # later arrivals fall after the horizon


def test_run_info_and_deployment_are_exposed():
    result = servesim.simulate(SCENARIO)
    assert result.info.num_replicas == 1
    assert result.deployment.memory.num_kv_blocks > 0
    assert result.deployment.max_model_len == 8192
    assert np.all(result.requests.replica == 0)


def test_result_write_guards_its_folder(tmp_path):
    from servesim.errors import OutputError

    out = tmp_path / "out"
    result = servesim.simulate(SCENARIO)
    result.write(out)
    result.write(out)  # the same run again: replaced
    (out / "programs.parquet").write_bytes(b"left by an earlier run")
    other = servesim.simulate({**SCENARIO, "seed": 99})
    with pytest.raises(OutputError, match="holds another run; pass overwrite=True to replace it"):
        other.write(out)
    other.write(out, overwrite=True)
    assert not (out / "programs.parquet").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 99
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="'notes.txt', which servesim did not write"):
        result.write(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
