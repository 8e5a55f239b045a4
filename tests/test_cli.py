"""The command line: commands through CliRunner, the error exit path through real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from servesim.cli import app

STATS_KEYS = ("mean", "p50", "p90", "p99")

SMALL = {
    "name": "cli-small",
    "seed": 4,
    "workload": {
        "kind": "synthetic",
        "num_requests": 200,
        "arrival": {"process": "poisson", "rate_rps": 5.0},
        "prompt_tokens": {"dist": "uniform", "low": 50, "high": 1500},
        "output_tokens": {"dist": "uniform", "low": 5, "high": 200},
    },
    "cluster": {"num_replicas": 2},
    "slo": {"ttft_s": 0.5},
}

# Azure rows: three good ones (at 0 s, 2.5 s and 10 s) and one of each kind of bad row.
AZURE_CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:00:00.0000000,100,10
not a time,10,10
2023-11-16 18:00:01.0000000,abc,5
2023-11-16 18:00:02.5000000,300,30
2023-11-16 18:00:03.0000000,100,0
2023-11-16 18:00:04.0000000,,5
2023-11-16 18:00:05.0000000,1,2,3
2023-11-16 18:00:06.0000000,-5,3
2023-11-16 18:00:10.0000000,200,20
"""
AZURE_SKIPPED = {
    "unparseable_timestamp": 1,
    "unparseable_number": 1,
    "zero_output_tokens": 1,
    "missing_field": 1,
    "wrong_column_count": 1,
    "negative_value": 1,
}

# Mooncake: timestamps in ms; one blank line (ignored), one non-JSON line and
# one zero-prompt line (skipped).  Kept blocks 1,2 | 1,3 | 1,2,4 | 5,5: nine
# occurrences of five ids, so four reuses (the 2nd and 3rd 1, the 2nd 2, the
# 2nd 5); the skipped line's block 9 does not count.
MOONCAKE_LINES = [
    '{"timestamp": 1000, "input_length": 1000, "output_length": 10, "hash_ids": [1, 2]}',
    '{"timestamp": 1500, "input_length": 600, "output_length": 5, "hash_ids": [1, 3]}',
    "",
    "this is not json",
    '{"timestamp": 3000, "input_length": 1500, "output_length": 7, "hash_ids": [1, 2, 4]}',
    '{"timestamp": 3500, "input_length": 0, "output_length": 7, "hash_ids": [9]}',
    '{"timestamp": 5000, "input_length": 900, "output_length": 3, "hash_ids": [5, 5]}',
]


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def invoke(*args: str, env: dict | None = None):
    """Run the app in-process; a ServesimError or crash is re-raised rather than hidden."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result


def servesim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m servesim`` in a subprocess, through ``main()``."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "servesim", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Exit 2, exactly one stderr line starting with 'error:', no traceback; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert proc.stderr.endswith("\n")
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture
def small_scenario(tmp_path) -> Path:
    return write_yaml(tmp_path / "small.yaml", SMALL)


# --------------------------------------------------------------------------- run


def test_run_json_and_out(small_scenario, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", str(small_scenario), "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_requests"] == 200
    assert summary["num_finished"] + summary["num_rejected"] + summary["num_in_flight"] == 200
    assert summary["num_in_flight"] == 0
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(STATS_KEYS) <= set(summary[key])
        assert all(isinstance(summary[key][k], float) for k in STATS_KEYS)
    assert summary["output_tokens_per_s"] > 0
    assert summary["wall_time_s"] > 0

    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "requests.parquet",
        "summary.json",
        "timeseries.parquet",
    ]
    written = json.loads((out / "summary.json").read_text())
    for key in ("num_requests", "num_finished", "num_rejected", "ttft_s", "tpot_s", "e2e_s",
                "output_tokens_per_s", "wall_time_s"):
        assert key in written
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(STATS_KEYS) <= set(written[key])
    # What was printed is what was written.
    assert written == summary
    requests = pq.read_table(out / "requests.parquet")
    assert requests.num_rows == 200
    assert {"ttft_s", "tpot_s", "e2e_s", "queue_delay_s", "max_itl_s", "num_preemptions"} <= set(requests.column_names)
    timeseries = pq.read_table(out / "timeseries.parquet")
    assert timeseries.num_rows > 0 and "kv_used_blocks" in timeseries.column_names
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["name"] == "cli-small" and config["cluster"]["num_replicas"] == 2
    assert config["scheduler"]["max_num_seqs"] >= 1  # defaults filled in


def test_run_overrides_reach_the_run(small_scenario):
    result = invoke("run", str(small_scenario), "--json", "--set", "workload.num_requests=50",
                    "--set", "cluster.num_replicas=1")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_requests"] == 50 and summary["num_replicas"] == 1


def test_run_table_output(small_scenario, tmp_path):
    out = tmp_path / "table-out"
    result = invoke("run", str(small_scenario), "--out", str(out), env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "TTFT" in result.stdout and "E2E" in result.stdout
    assert f"outputs written to {out}/" in result.stdout
    assert (out / "summary.json").is_file()


def test_run_default_scenario_json():
    # The only run of the full default scenario in the test suite (a few seconds).
    result = invoke("run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["num_requests"] == 19366
    assert summary["num_in_flight"] == 0  # no horizon: the run drains
    assert summary["num_finished"] + summary["num_rejected"] == 19366
    assert summary["num_replicas"] == 1 and summary["gpus_per_replica"] == 1


# --------------------------------------------------------------------------- config


def test_config_show_applies_overrides(small_scenario):
    result = invoke("config", "show", str(small_scenario), "--set", "cluster.num_replicas=4",
                    "--set", "slo.tpot_s=0.05")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["cluster"]["num_replicas"] == 4
    assert shown["slo"] == {"ttft_s": 0.5, "tpot_s": 0.05, "e2e_s": None}
    assert shown["workload"]["num_requests"] == 200
    assert list(shown)[:3] == ["name", "seed", "horizon_s"]  # field order, not sorted


def test_config_show_default_round_trips():
    from servesim.config import ScenarioConfig

    result = invoke("config", "show")
    assert result.exit_code == 0
    shown = ScenarioConfig.model_validate(yaml.safe_load(result.stdout))
    assert shown == ScenarioConfig(slo={"ttft_s": 0.5, "tpot_s": 0.05})  # examples/default.yaml's SLOs


def test_config_schema_is_json():
    result = invoke("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "ScenarioConfig"
    assert "cluster" in schema["properties"] and "ClusterConfig" in schema["$defs"]


# --------------------------------------------------------------------------- catalog


def test_catalog_json():
    result = invoke("catalog", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    models = {m["id"]: m for m in data["models"]}
    hardware = {h["id"]: h for h in data["hardware"]}
    assert "llama-3-8b" in models and "llama-3-70b" in models
    assert "h100" in hardware and "l4" in hardware
    assert models["llama-3-8b"]["layers"] == 32


@pytest.mark.parametrize("columns", [None, "250"])
def test_catalog_table_shows_every_id(columns):
    # None: piped output, where rich assumes 80 columns; ids must not be cut.
    data = json.loads(invoke("catalog", "--json").stdout)
    result = invoke("catalog", env={"COLUMNS": columns})
    assert result.exit_code == 0
    for row in data["models"] + data["hardware"]:
        assert row["id"] in result.stdout


def test_catalog_includes_scenario_entries(tmp_path):
    from importlib import resources

    shipped = yaml.safe_load(resources.files("servesim").joinpath("data", "models.yaml").read_text())
    entry = {**shipped["models"]["llama-3-8b"], "name": "My 8B"}
    scenario = write_yaml(tmp_path / "s.yaml", {"catalog": {"models": {"my-8b": entry}}})
    result = invoke("catalog", str(scenario), "--json")
    assert result.exit_code == 0, result.output
    models = {m["id"]: m for m in json.loads(result.stdout)["models"]}
    assert models["my-8b"]["name"] == "My 8B" and "llama-3-8b" in models


# --------------------------------------------------------------------------- trace stats


def test_trace_stats_azure_with_bad_rows(tmp_path):
    trace = tmp_path / "azure.csv"
    trace.write_text(AZURE_CSV)
    result = invoke("trace", "stats", str(trace), "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["num_requests"] == 3
    assert stats["skipped"] == dict(sorted(AZURE_SKIPPED.items()))
    assert stats["num_skipped"] == 6
    assert stats["span_s"] == 10.0
    assert stats["mean_rate_rps"] == pytest.approx(2 / 10)
    assert stats["peak_rate_rps_60s"] == pytest.approx(3 / 60)
    assert stats["prompt_tokens"] == {"mean": 200.0, "p50": 200.0, "p90": 280.0, "p99": 298.0, "max": 300}
    assert stats["output_tokens"]["max"] == 30
    assert stats["source"] == f"azure:{trace}"


def test_trace_stats_azure_text(tmp_path):
    trace = tmp_path / "azure.csv"
    trace.write_text(AZURE_CSV)
    result = invoke("trace", "stats", str(trace), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "requests" in result.stdout and "wrong_column_count 1" in result.stdout


def test_trace_stats_mooncake_prefix_reuse(tmp_path):
    trace = tmp_path / "mc.jsonl"
    trace.write_text("\n".join(MOONCAKE_LINES) + "\n")
    result = invoke("trace", "stats", str(trace), "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["num_requests"] == 4
    assert stats["skipped"] == {"invalid_json": 1, "zero_prompt_tokens": 1}
    assert stats["span_s"] == 4.0  # 1000 ms to 5000 ms
    assert stats["prefix_block_size"] == 512
    # Occurrences: 1,2 | 1,3 | 1,2,4 | 5,5 = 9 blocks, ids {1,2,3,4,5}: 4 reuses.
    assert stats["num_prefix_blocks"] == 9
    assert stats["num_unique_prefix_blocks"] == 5
    assert stats["prefix_reuse_fraction"] == pytest.approx(4 / 9)


def test_trace_stats_builtin():
    result = invoke("trace", "stats", "builtin:azure-2023-conv", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["num_requests"] == 19366


# --------------------------------------------------------------------------- errors (subprocess)


def test_error_unknown_model():
    line = assert_one_line_error(servesim("run", "--set", "cluster.model=llama-9b"))
    assert line.startswith("error: unknown model 'llama-9b'; known: ")
    assert "llama-3-8b" in line


def test_error_unknown_gpu():
    line = assert_one_line_error(servesim("run", "--set", "cluster.hardware=z100"))
    assert line.startswith("error: unknown hardware 'z100'; known: ")
    assert "h100" in line


def test_error_model_does_not_fit():
    line = assert_one_line_error(servesim("run", "--set", "cluster.model=llama-3-70b", "--set", "cluster.hardware=l4"))
    assert "llama-3-70b does not fit on 1 x l4" in line


def test_error_malformed_config(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncluster:\n  num_replicas: 1\n   model: llama-3-8b\n")
    line = assert_one_line_error(servesim("run", str(path)))
    assert line.startswith(f"error: {path}: line 4: ")


def test_error_bad_field_value(tmp_path):
    line = assert_one_line_error(servesim("config", "show", "--set", "cluster.num_replicas=0"))
    assert line.startswith("error: config error: cluster.num_replicas = 0: ")


def test_error_scenario_missing(tmp_path):
    line = assert_one_line_error(servesim("run", str(tmp_path / "nope.yaml")))
    assert line == f"error: scenario file not found: {tmp_path / 'nope.yaml'}"


def test_error_trace_file_missing(tmp_path):
    line = assert_one_line_error(servesim("trace", "stats", "nope.csv", cwd=tmp_path))
    assert line == "error: trace file not found: nope.csv"
    # The same through a scenario.
    scenario = write_yaml(tmp_path / "s.yaml", {"workload": {"kind": "trace", "path": "missing.csv"}})
    line = assert_one_line_error(servesim("run", str(scenario), "--json", cwd=tmp_path))
    assert line == "error: trace file not found: missing.csv"


def test_error_trace_with_only_bad_rows(tmp_path):
    trace = tmp_path / "bad.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0000000,0,5\nxx,5,5\n")
    line = assert_one_line_error(servesim("trace", "stats", str(trace)))
    assert line == (
        f"error: trace {trace} has no usable row "
        "(2 rows read; skipped: unparseable_timestamp=1, zero_prompt_tokens=1)"
    )


def test_error_bad_row_with_on_bad_row_error(tmp_path):
    (tmp_path / "azure.csv").write_text(AZURE_CSV)
    scenario = write_yaml(
        tmp_path / "s.yaml",
        {"workload": {"kind": "trace", "path": "azure.csv", "on_bad_row": "error"}},
    )
    line = assert_one_line_error(servesim("run", str(scenario), "--json"))
    # The first bad row is on line 3, a timestamp.
    trace = tmp_path / "azure.csv"
    assert line.startswith(f"error: trace {trace} line 3, column 'TIMESTAMP': value 'not a time' is not allowed")
    assert "(unparseable_timestamp)" in line and "on_bad_row=skip" in line


def test_error_bad_row_mooncake(tmp_path):
    (tmp_path / "mc.jsonl").write_text("\n".join(MOONCAKE_LINES) + "\n")
    scenario = write_yaml(
        tmp_path / "s.yaml",
        {"workload": {"kind": "trace", "path": "mc.jsonl", "on_bad_row": "error"}},
    )
    line = assert_one_line_error(servesim("run", str(scenario)))
    assert line.startswith(f"error: trace {tmp_path / 'mc.jsonl'} line 4, column '(line)': value 'this is not json'")


def test_error_bad_trace_option():
    line = assert_one_line_error(servesim("trace", "stats", "builtin:azure-2023-conv", "--format", "csv"))
    assert line.startswith("error: option: format = 'csv': ")


def test_usage_errors_keep_click_behaviour():
    proc = servesim("run", "--no-such-option")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "No such option" in proc.stderr


def test_main_in_process(capsys):
    from servesim.cli import main

    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--set", "cluster.num_replica=2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config error: cluster.num_replica: unknown field (allowed: ")
    assert err.count("\n") == 1


def test_error_out_is_a_file(small_scenario, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    line = assert_one_line_error(servesim("run", str(small_scenario), "--json", "--out", str(target)))
    assert line == f"error: option --out {target}: exists and is not a folder"
    assert target.read_text() == "not a folder"


def test_error_out_cannot_be_created(small_scenario, tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "sub"
    line = assert_one_line_error(servesim("run", str(small_scenario), "--json", "--out", str(target)))
    assert line == f"error: option --out {target}: cannot be created: {tmp_path / 'file'} is not a folder"


# ------------------------------------------------- outputs written safely, one error path (issue 15)


def main_error(capsys, *args: str) -> tuple[int, str]:
    """``main(args)`` in-process: (exit status, the whole of stderr)."""
    from servesim.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code, capsys.readouterr().err


def one_line(capsys, *args: str) -> str:
    code, err = main_error(capsys, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.rstrip("\n")


def test_out_refuses_a_folder_holding_another_run(small_scenario, tmp_path):
    out = tmp_path / "X"
    invoke("run", str(small_scenario), "--json", "--out", str(out))
    (out / "kvcache_timeseries.parquet").write_bytes(b"an earlier run's extra file")
    before = (out / "summary.json").read_text()
    proc = servesim("run", str(small_scenario), "--json", "--set", "seed=5", "--out", str(out))
    line = assert_one_line_error(proc)
    assert line == (f"error: option --out {out}: holds another run; pass --overwrite to replace it, "
                    "or choose another folder")
    assert (out / "summary.json").read_text() == before
    invoke("run", str(small_scenario), "--json", "--set", "seed=5", "--out", str(out), "--overwrite")
    assert not (out / "kvcache_timeseries.parquet").exists()  # the old run's extra file went with it
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "small.yaml"]  # no temporary folder left


def test_out_same_run_is_replaced_without_overwrite(small_scenario, tmp_path):
    out = tmp_path / "X"
    invoke("run", str(small_scenario), "--json", "--out", str(out))
    result = invoke("run", str(small_scenario), "--json", "--out", str(out))
    assert result.exit_code == 0


def test_out_never_deletes_files_servesim_did_not_write(small_scenario, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = one_line(capsys, "run", str(small_scenario), "--json", "--out", str(out), "--overwrite")
    assert line == (f"error: option --out {out}: holds 'notes.txt', which servesim did not write; "
                    "choose another folder (servesim never deletes files it did not write)")
    assert (out / "notes.txt").read_text() == "keep me"


def test_out_unwritable_is_found_before_the_run(small_scenario, tmp_path, capsys, monkeypatch):
    import servesim.api
    import servesim.out_dir

    def no_run(*args, **kwargs):
        raise AssertionError("simulated although --out cannot be written")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(servesim.api, "simulate", no_run)
    monkeypatch.setattr(servesim.out_dir.tempfile, "mkdtemp", denied)
    out = tmp_path / "ro" / "out"
    line = one_line(capsys, "run", str(small_scenario), "--json", "--out", str(out))
    assert line == f"error: option --out {out}: cannot write in {tmp_path}: Permission denied"


def test_report_of_a_replaced_run_has_no_old_files(small_scenario, tmp_path):
    # The case: a prefix-caching run, then a plain one into the same folder.
    out = tmp_path / "X"
    cached = {"name": "cached", "workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 50},
              "cluster": {"model": "qwen2.5-7b", "prefix_caching": True}}
    scenario = write_yaml(tmp_path / "cached.yaml", cached)
    invoke("run", str(scenario), "--json", "--out", str(out))
    assert (out / "kvcache_timeseries.parquet").exists()
    assert invoke("run", str(small_scenario), "--json", "--out", str(out), "--overwrite").exit_code == 0
    assert not (out / "kvcache_timeseries.parquet").exists()


def test_non_utf8_files_are_one_line_errors(tmp_path, capsys):
    scenario = tmp_path / "bad.yaml"
    scenario.write_bytes(b"name: x\xff\n")
    assert one_line(capsys, "run", str(scenario)) == (
        f"error: scenario file {scenario} is not UTF-8 text: invalid start byte at byte 7")
    trace = tmp_path / "bad.csv"
    trace.write_bytes(AZURE_CSV.encode().replace(b"100,10", b"100,10\xff", 1))
    assert one_line(capsys, "trace", "stats", str(trace)).startswith(f"error: trace {trace} is not UTF-8 text: ")
    calib = tmp_path / "calib.yaml"
    calib.write_bytes(b"hardware: h100\xff\n")
    assert one_line(capsys, "run", "--json", "--set", f"calibration={calib}").startswith(
        f"error: calibration file {calib} is not UTF-8 text: ")


def test_unreadable_trace_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import builtins

    trace = tmp_path / "trace.csv"
    trace.write_text(AZURE_CSV)
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(trace):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    assert one_line(capsys, "trace", "stats", str(trace)) == f"error: cannot read trace {trace}: Permission denied"
    monkeypatch.undo()
    assert one_line(capsys, "trace", "stats", str(tmp_path)) == f"error: trace path is not a file: {tmp_path}"


def _tiny_sweep(tmp_path, name="s") -> Path:
    from sweep_scenarios import tiny_base

    return write_yaml(tmp_path / f"{name}.yaml", {"name": name, "base": tiny_base(20),
                                                  "axes": [{"kind": "grid", "fields": {"cluster.num_replicas": [1]}}]})


def _tiny_search(tmp_path) -> Path:
    from sweep_scenarios import tiny_base

    return write_yaml(tmp_path / "q.yaml", {"name": "q", "base": tiny_base(20), "trials": 1,
                                            "space": {"cluster.num_replicas": {"int": [1, 2]}},
                                            "objectives": [{"metric": "cost_usd_per_hr"}]})


def test_sweep_out_faults_are_one_line_errors(tmp_path, capsys):
    spec = _tiny_sweep(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert one_line(capsys, "search", str(_tiny_search(tmp_path)), "--out", str(taken), "--workers", "0",
                    "--no-progress") == f"error: option --out {taken}: exists and is not a folder"
    assert one_line(capsys, "sweep", str(spec), "--out", str(taken), "--workers", "0", "--no-progress") == (
        f"error: option --out {taken}: exists and is not a folder")
    assert one_line(capsys, "sweep", str(spec), "--out", str(taken / "sub"), "--workers", "0", "--no-progress") == (
        f"error: option --out {taken / 'sub'}: cannot be created: {taken} is not a folder")
    assert taken.read_text() == "x"


def test_sweep_out_resumes_its_own_folder_and_refuses_another(tmp_path, capsys, small_scenario):
    spec = _tiny_sweep(tmp_path)
    out = tmp_path / "sw"
    args = ("--out", str(out), "--workers", "0", "--no-progress")
    assert invoke("sweep", str(spec), *args).exit_code == 0
    again = invoke("sweep", str(spec), *args)
    assert "1 already recorded" in again.output  # the same spec resumes
    other = _tiny_sweep(tmp_path, "other")
    assert one_line(capsys, "sweep", str(other), *args) == (
        f"error: option --out {out}: holds the results of sweep 's'; pass --overwrite to replace it, "
        "or choose another folder")
    assert "0 already recorded, 1 done" in invoke("sweep", str(other), *args, "--overwrite").output
    run_out = tmp_path / "run"
    invoke("run", str(small_scenario), "--json", "--out", str(run_out))
    assert one_line(capsys, "sweep", str(spec), "--out", str(run_out), "--workers", "0", "--no-progress") == (
        f"error: option --out {run_out}: holds another run; pass --overwrite to replace it, or choose another folder")


def test_infinite_and_nan_numbers_are_refused(capsys):
    assert one_line(capsys, "config", "show", "--set", "workload.rate_scale=.inf") == (
        "error: config error: workload.rate_scale = inf: Input should be a finite number")
    assert one_line(capsys, "config", "show", "--set", "perf.gemm_efficiency=.nan") == (
        "error: config error: perf.gemm_efficiency = nan: Input should be a finite number")


def test_duplicate_yaml_keys_are_refused(tmp_path, capsys):
    scenario = tmp_path / "dup.yaml"
    scenario.write_text("name: a\ncluster:\n  num_replicas: 1\n  num_replicas: 2\n")
    assert one_line(capsys, "config", "show", str(scenario)) == (
        f"error: {scenario}: line 4: duplicate key 'num_replicas' (first on line 3)")


def test_error_path_user_faults_exit_2_and_bugs_exit_1(capsys, monkeypatch):
    cli_app = sys.modules["servesim.cli.app"]  # the attribute servesim.cli.app is the typer app

    def fault(*args, **kwargs):
        raise IsADirectoryError(21, "Is a directory", "/some/file")

    monkeypatch.setattr(cli_app, "_trace_config", fault)
    assert one_line(capsys, "trace", "stats", "x") == "error: Is a directory: /some/file"

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(cli_app, "_trace_config", bug)
    code, err = main_error(capsys, "trace", "stats", "x")
    assert code == 1
    assert "Traceback" in err and "KeyError: 'oops'" in err
    assert err.rstrip("\n").splitlines()[-1].startswith("error: this is a bug in servesim; please report it")


def test_a_run_that_rejects_every_request_exits_3_saying_why(small_scenario, tmp_path):
    out = tmp_path / "out"
    proc = servesim("run", str(small_scenario), "--set", "cluster.max_model_len=8", "--no-progress", "--out", str(out))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "rejected 200" in proc.stdout and "rejected by reason: exceeds_max_model_len 200" in proc.stdout
    assert proc.stderr == (
        "error: every request was rejected (200 of 200: exceeds_max_model_len 200); nothing was served\n"
    )
    assert (out / "summary.json").is_file()  # the run's files are still written
    json_proc = servesim("run", str(small_scenario), "--set", "cluster.max_model_len=8", "--json")
    assert json_proc.returncode == 3 and json.loads(json_proc.stdout)["num_rejected"] == 200
