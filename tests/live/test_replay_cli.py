"""``servesim replay`` on the command line: a replay's folder in a simulation's format, refusals in one line."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from live.replay_fakes import FakeEngine, free_port, serving
from cli_errors import one_line
from servesim.cli.app import app

SCENARIO = {
    "name": "replay-small",
    "seed": 2,
    "workload": {
        "kind": "synthetic",
        "num_requests": 5,
        "arrival": {"process": "poisson", "rate_rps": 10.0},
        "prompt_tokens": {"dist": "uniform", "low": 20, "high": 60},
        "output_tokens": {"dist": "uniform", "low": 3, "high": 8},
    },
}
REPLAY_KEYS = {"endpoint", "model", "time_scale", "started_at", "prompt", "max_concurrency", "timeout_s", "closed_loop",
               "num_sent", "send_lag_s", "tokens_counted_from", "usage_prompt_mismatches", "cached_tokens", "cpu",
               "metrics_files"}
CPU_KEYS = {"busy_share", "self_share", "server_share", "others_share", "others_share_max", "num_cpus", "duration_s",
            "period_s", "server_pid"}


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    return path


def test_replay_folder_has_the_simulations_format(scenario, tmp_path):
    sim, rep = tmp_path / "sim", tmp_path / "rep"
    assert invoke("run", str(scenario), "--out", str(sim), "--no-progress").exit_code == 0
    engine = FakeEngine()
    with serving(engine) as url:
        result = invoke("replay", str(scenario), "--endpoint", url + "/v1/", "--out", str(rep),
                        "--server-pid", str(os.getpid()))
    assert result.exit_code == 0, result.output
    assert "replaying up to 5 requests of replay-small" in result.output and "other processes' CPU" in result.output
    sim_schema, rep_schema = pq.read_schema(sim / "requests.parquet"), pq.read_schema(rep / "requests.parquet")
    assert rep_schema.names == sim_schema.names + ["sent_s"]
    assert [rep_schema.field(n).type for n in sim_schema.names] == [f.type for f in sim_schema]
    assert rep_schema.field("sent_s").type == pa.float64()
    tokens = pq.read_schema(rep / "token_times.parquet")
    assert list(zip(tokens.names, map(str, tokens.types))) == [("request_id", "int64"), ("token_index", "int64"),
                                                                ("time_s", "double")]
    assert pq.read_table(rep / "token_times.parquet").num_rows == sum(b["max_tokens"] for b in engine.bodies)
    sim_summary = json.loads((sim / "summary.json").read_text())
    rep_summary = json.loads((rep / "summary.json").read_text())
    assert set(rep_summary) == set(sim_summary) | {"replay"}
    assert set(rep_summary["replay"]) == REPLAY_KEYS and set(rep_summary["replay"]["cpu"]) == CPU_KEYS
    cpu = rep_summary["replay"]["cpu"]
    assert cpu["server_pid"] == os.getpid() and cpu["server_share"] is not None  # the fake runs in this process
    assert 0 <= cpu["others_share"] <= 1 and cpu["num_cpus"] >= 1
    assert rep_summary["replay"]["endpoint"] == url + "/v1/" and rep_summary["replay"]["model"] == "fake-model"
    unknown = (rep_summary["num_replicas"], rep_summary["num_gpus"], rep_summary["cost"]["gpu_hours"])
    assert unknown == (None, None, None)
    assert (rep / "config.yaml").read_text() == (sim / "config.yaml").read_text()
    assert (rep / "metrics_before.txt").read_text().endswith("fake_requests_total 0\n")
    assert (rep / "metrics_after.txt").read_text().endswith("fake_requests_total 5\n")
    assert not (rep / "timeseries.parquet").exists()
    compared = invoke("compare", str(sim), str(rep))  # the same workload: ids, lengths and arrivals agree
    assert compared.exit_code == 0 and "TTFT mean (ms)" in compared.output, compared.output
    reported = invoke("report", str(rep))
    assert reported.exit_code == 0 and "servesim replay: replay-small" in (rep / "report.md").read_text()
    assert "<h1>servesim replay: replay-small</h1>" in (rep / "report.html").read_text()


def test_replay_never_replaces_a_folder_silently(scenario, tmp_path, capsys):
    sim = tmp_path / "sim"
    invoke("run", str(scenario), "--out", str(sim), "--no-progress")
    line = one_line(capsys, "replay", str(scenario), "--endpoint", "http://127.0.0.1:1", "--out", str(sim))
    assert line == (f"error: option --out {sim}: holds another run; pass --overwrite to replace it, "
                    "or choose another folder")


def test_replay_refusals_are_one_line(scenario, tmp_path, capsys):
    out = str(tmp_path / "out")
    closed = f"http://127.0.0.1:{free_port()}"
    line = one_line(capsys, "replay", str(scenario), "--endpoint", closed, "--out", out)
    assert line.startswith(f"error: option --endpoint {closed}: cannot list its models ({closed}/v1/models: ")
    assert line.endswith("; pass --model NAME")
    assert one_line(capsys, "replay", str(scenario), "--endpoint", "localhost:8000", "--out", out) == (
        "error: option --endpoint localhost:8000: not an http:// or https:// URL")
    assert one_line(capsys, "replay", str(scenario), "--endpoint", closed, "--time-scale", "0", "--out", out) == (
        "error: option --time-scale 0.0: must be > 0")
    assert one_line(capsys, "replay", str(scenario), "--endpoint", closed, "--prompt", "words", "--out", out) == (
        "error: option --prompt words: must be tokens or text")
    assert one_line(capsys, "replay", str(scenario), "--endpoint", closed, "--model", "m", "--server-pid", "999999999",
                    "--out", out).startswith("error: option --server-pid 999999999: no such process")
    agent = tmp_path / "agent.yaml"
    agent.write_text(yaml.safe_dump({"workload": {"kind": "agent", "num_programs": 2}}))
    assert one_line(capsys, "replay", str(agent), "--endpoint", closed, "--out", out).startswith(
        "error: workload.kind agent: replay does not support agent programs")
    assert not (tmp_path / "out").exists()


def test_nothing_finished_exits_3_after_writing(scenario, tmp_path):
    rep = tmp_path / "rep"
    result = CliRunner().invoke(app, ["replay", str(scenario), "--endpoint", f"http://127.0.0.1:{free_port()}",
                                      "--model", "m", "--out", str(rep), "--json"])
    assert result.exit_code == 3
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["num_failed"] == 5 and summary["num_finished"] == 0
    assert "error: no request finished (connection: ConnectError" in result.output
