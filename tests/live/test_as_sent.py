"""``servesim run --arrivals-from REPLAY_DIR``: the scenario's workload with the send times a
replay recorded, and ``servesim compare --from-send`` of that simulation with the replay."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cli_errors import one_line
from servesim.cli.app import app
from servesim.config import load_config
from servesim.core.rng import RandomStreams
from servesim.live.as_sent import workload_as_sent
from servesim.live.compare import compare_folders
from servesim.metrics.records import FINISHED, RequestTable
from servesim.report.files import requests_arrow, write_parquet
from servesim.workload.builder import build_workload

SCENARIO = {"name": "as-sent", "seed": 3,
            "workload": {"kind": "synthetic", "num_requests": 6, "arrival": {"process": "poisson", "rate_rps": 2.0},
                         "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 8}}}


@pytest.fixture
def scenario(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


def _workload(path):
    config = load_config(path, [])
    return build_workload(config.workload, RandomStreams(config.seed))


def _replay(folder, workload, sent, *, replay=None, prompt=None):
    """A replay folder of ``workload`` whose client sent request i at ``sent[i]``: every request
    finished, its first token 0.1 s after the send and its last 0.3 s after."""
    folder.mkdir()
    n = len(workload)
    sent = np.asarray(sent, dtype=np.float64)
    table = RequestTable(
        request_id=np.arange(n), arrival_s=workload.arrival_s,
        prompt_tokens=workload.prompt_tokens if prompt is None else prompt, output_tokens=workload.output_tokens,
        tokens_generated=workload.output_tokens, replica=[-1] * n, status=[FINISHED] * n,
        reject_reason=np.array([""] * n, dtype=object), first_scheduled_s=[np.nan] * n,
        first_token_s=sent + 0.1, finish_s=sent + 0.3, max_itl_s=[np.nan] * n, num_preemptions=[0] * n)
    arrow = requests_arrow(table).append_column("sent_s", pa.array(sent))
    write_parquet(folder / "requests.parquet", arrow)
    summary = {"num_requests": n, "replay": replay or {"time_scale": 1.0, "closed_loop": False}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(yaml.safe_dump(SCENARIO))
    return folder


def test_the_workload_takes_the_replays_send_times(scenario, tmp_path):
    workload = _workload(scenario)
    # The client stalled: requests 2 and 3 went out together, 0.4 s after request 2 was due.
    sent = workload.arrival_s.copy()
    sent[2] = sent[3] = workload.arrival_s[2] + 0.4
    sent[3] = max(sent[3], workload.arrival_s[3])
    sent[4:] = np.maximum(sent[4:], sent[3])
    replay = _replay(tmp_path / "replay", workload, sent)
    as_sent = workload_as_sent(workload, replay)
    assert np.array_equal(as_sent.arrival_s, sent)
    assert np.array_equal(as_sent.prompt_tokens, workload.prompt_tokens)
    assert "as sent by the replay" in as_sent.source
    # The CLI simulates those arrivals; compare --from-send accepts that simulation.
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["run", str(scenario), "--no-progress", "--out", str(out),
                                      "--arrivals-from", str(replay)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    arrivals = pq.read_table(out / "requests.parquet").column("arrival_s").to_numpy()
    assert np.allclose(arrivals, sent, atol=1e-9)
    assert json.loads((out / "summary.json").read_text())["arrivals_from"] == str(replay)
    compared = compare_folders(out, replay, from_send=True).values
    assert compared["ttft_mean"][1] == pytest.approx(0.1)  # the replay's, from each send
    # Without --from-send the replay's own arrivals (the scheduled ones) differ from the sim's.
    with pytest.raises(Exception, match="different workloads"):
        compare_folders(out, replay)


def test_bad_replays_are_one_line(scenario, tmp_path, capsys):
    workload = _workload(scenario)
    n = len(workload)
    cases = {
        "closed": (_replay(tmp_path / "closed", workload, workload.arrival_s,
                           replay={"time_scale": 1.0, "closed_loop": True}), "closed-loop"),
        "scaled": (_replay(tmp_path / "scaled", workload, workload.arrival_s,
                           replay={"time_scale": 2.0, "closed_loop": False}), "--time-scale 2"),
        "other": (_replay(tmp_path / "other", workload, workload.arrival_s, prompt=np.full(n, 65)),
                  "request 0 has 65 prompt tokens in the replay, 64"),
        "unsent": (_replay(tmp_path / "unsent", workload, np.r_[workload.arrival_s[:-1], np.nan]),
                   f"request {n - 1} was never sent"),
        "backwards": (_replay(tmp_path / "backwards", workload, np.r_[workload.arrival_s[:2] + [0, 5.0],
                                                                       workload.arrival_s[2:]]),
                      "request 2 was sent at"),
    }
    for folder, expected in cases.values():
        line = one_line(capsys, "run", str(scenario), "--no-progress", "--arrivals-from", str(folder))
        assert "--arrivals-from" in line and expected in line, line
    line = one_line(capsys, "run", str(scenario), "--no-progress", "--arrivals-from", str(tmp_path / "missing"))
    assert "not a replay's folder" in line
