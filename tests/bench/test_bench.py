"""predict-bench and validate-bench: rows to scenarios, metrics, errors, the commands."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.bench.accuracy import metric_errors, worst_errors
from servesim.bench.metrics import METRICS
from servesim.bench.rows import BenchRow, read_bench_csv, row_scenario
from servesim.cli import app, main

HEADER = "case_id,model,hardware,isl,osl,concurrency,request_rate,num_requests,engine,range_ratio,note"
ROWS = [
    "c1,llama-3-8b,h100,128,16,1,,5,,,first",
    "c2,llama-3-8b,h100,256,32,2,,8,,,",
    "r1,llama-3-8b,h100,128,16,,4,12,,0.5,open loop",
]


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def read_out(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def run_main(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


# --------------------------------------------------------------------------- rows


def test_rows_map_to_scenarios_with_only_the_given_keys(tmp_path):
    table = read_bench_csv(write(tmp_path / "in.csv", HEADER, ROWS))
    closed, _, open_loop = (row_scenario(row) for row in table.rows)
    assert closed == {
        "name": "bench-c1",
        "workload": {"kind": "closed_loop", "concurrency": 1, "num_requests": 5, "input_len": 128, "output_len": 16,
                     "range_ratio": 1.0},
        "cluster": {"model": "llama-3-8b", "hardware": "h100"},
        "scheduler": {},
    }
    assert open_loop["workload"] == {
        "kind": "synthetic", "num_requests": 12, "arrival": {"process": "poisson", "rate_rps": 4.0},
        "prompt_tokens": {"dist": "uniform", "low": 64, "high": 128},
        "output_tokens": {"dist": "uniform", "low": 8, "high": 16},
    }


def test_optional_columns_reach_their_sections():
    raw = {"model": "m", "hardware": "h", "isl": "100", "osl": "10", "request_rate": "2", "arrival": "constant",
           "shared_prefix_tokens": "64", "num_prefixes": "3", "max_num_seqs": "8", "prefix_caching": "true",
           "gpu_memory_utilization": "0.8", "tensor_parallel": "2", "engine": "vllm", "seed": "4"}
    from servesim.bench.rows import _parse

    scenario = row_scenario(BenchRow(1, _parse(raw), raw), ["cat.yaml"], "cal.yaml")
    assert scenario["cluster"] == {"model": "m", "hardware": "h", "engine": "vllm", "tensor_parallel": 2,
                                   "gpu_memory_utilization": 0.8, "prefix_caching": True}
    assert scenario["scheduler"] == {"max_num_seqs": 8}
    assert scenario["seed"] == 4 and scenario["catalog"] == {"files": ["cat.yaml"]} and scenario["calibration"] == "cal.yaml"
    w = scenario["workload"]
    assert w["num_requests"] == 1000 and w["arrival"] == {"process": "constant", "rate_rps": 2.0}
    assert w["prompt_tokens"] == {"dist": "fixed", "value": 100}
    assert w["system_prompts"] == {"count": 3, "tokens": 64, "zipf": 0.0} and w["prefix_block_tokens"] == 16


def test_closed_loop_default_num_requests_is_ten_per_client():
    raw = {"model": "m", "hardware": "h", "isl": "100", "osl": "10", "concurrency": "4"}
    from servesim.bench.rows import _parse

    assert row_scenario(BenchRow(1, _parse(raw), raw))["workload"]["num_requests"] == 40


# --------------------------------------------------------------------------- predict-bench


def test_predict_bench_keeps_columns_and_adds_metrics(tmp_path):
    src = write(tmp_path / "in.csv", HEADER, ROWS)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict-bench", str(src), "-o", str(out), "--jobs", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    columns, rows = read_out(out)
    assert columns == HEADER.split(",") + list(METRICS)
    assert [r["case_id"] for r in rows] == ["c1", "c2", "r1"] and rows[0]["note"] == "first" and rows[0]["engine"] == ""
    assert [r["num_finished"] for r in rows] == ["5", "8", "12"] and {r["num_rejected"] for r in rows} == {"0"}
    c1 = {k: float(rows[0][k]) for k in METRICS}
    # One client, fixed lengths: every request is alike, and back to back.
    assert c1["ttft_ms_p50"] == pytest.approx(c1["ttft_ms_mean"]) == pytest.approx(c1["ttft_ms_p99"])
    assert c1["e2e_ms_mean"] == pytest.approx(c1["ttft_ms_mean"] + 15 * c1["tpot_ms_mean"], rel=1e-5)
    assert c1["requests_per_s"] == pytest.approx(1000 / c1["e2e_ms_mean"], rel=1e-5)
    assert c1["output_tokens_per_s"] == pytest.approx(16 * c1["requests_per_s"], rel=1e-5)


def test_predict_bench_is_the_same_in_one_process(tmp_path):
    src = write(tmp_path / "in.csv", HEADER, ROWS)
    for jobs in ("1", "3"):
        CliRunner().invoke(app, ["predict-bench", str(src), "-o", str(tmp_path / f"{jobs}.csv"), "--jobs", jobs],
                           catch_exceptions=False)
    assert (tmp_path / "1.csv").read_text() == (tmp_path / "3.csv").read_text()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("x,llama-3-8b,h100,abc,16,1,,,,,", "row 2 (line 3): column 'isl' = 'abc': must be a positive integer"),
        ("x,llama-3-8b,h100,128,16,1,3,,,,", "row 2 (line 3): column 'concurrency' = '1': give concurrency or request_rate, not both"),
        ("x,llama-3-8b,h100,128,16,,,,,,", "row 2 (line 3): column 'concurrency' = '': give concurrency (closed loop) or request_rate"),
        ("x,nope-model,h100,128,16,1,,,,,", "row 2 (line 3): column 'model' = 'nope-model': unknown model"),
        ("x,llama-3-8b,h100,128,16,1,,,,1.5,", "row 2 (line 3): column 'range_ratio' = '1.5': must be a number in (0, 1]"),
        ("x,llama-3-70b,h100,128,16,1,,,,,", "row 2 (line 3): column 'tensor_parallel' = '': llama-3-70b does not fit"),
        ("x,llama-3-8b,h100,100000,16,1,,,,,", "row 2 (line 3): column 'isl' = '100000': isl + shared_prefix_tokens + osl"),
    ],
)
def test_bad_rows_stop_with_one_line(tmp_path, capsys, row, message):
    src = write(tmp_path / "in.csv", HEADER, [ROWS[0], row])
    err = run_main(capsys, "predict-bench", str(src), "-o", str(tmp_path / "out.csv"))
    assert err.startswith(f"error: {src} {message}"), err
    assert not (tmp_path / "out.csv").exists()


def test_file_faults_are_one_line(tmp_path, capsys):
    assert "cannot read benchmark file" in run_main(capsys, "predict-bench", str(tmp_path / "no.csv"), "-o", "o.csv")
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"model,hardware,isl,osl,concurrency\n\xe9,h100,1,1,1\n")
    assert "not a readable UTF-8 CSV" in run_main(capsys, "predict-bench", str(bad), "-o", "o.csv")
    src = write(tmp_path / "in.csv", HEADER, ROWS[:1])
    err = run_main(capsys, "predict-bench", str(src), "-o", str(tmp_path / "missing" / "o.csv"))
    assert err.startswith("error: option -o ") and "does not exist" in err


@pytest.mark.skipif("engine" not in __import__("servesim.config", fromlist=["ClusterConfig"]).ClusterConfig.model_fields,
                    reason="cluster.engine is not a field yet")
def test_engine_column_reaches_the_cluster(tmp_path):
    src = write(tmp_path / "in.csv", HEADER, ["e1,llama-3-8b,h100,128,16,1,,4,vllm,,"])
    result = CliRunner().invoke(app, ["predict-bench", str(src), "-o", str(tmp_path / "o.csv")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert read_out(tmp_path / "o.csv")[1][0]["num_finished"] == "4"


# --------------------------------------------------------------------------- validate-bench


def _row(case: str, raw: dict) -> BenchRow:
    return BenchRow(1, {}, {"case_id": case, **raw})


def test_error_math_per_metric_and_worst_rows():
    rows = [_row("a", {"measured_ttft_ms_p50": "100", "measured_tpot_ms_mean": "10"}),
            _row("b", {"measured_ttft_ms_p50": "50", "measured_tpot_ms_mean": ""}),
            _row("c", {"measured_ttft_ms_p50": "200", "measured_tpot_ms_mean": "20"})]
    nan = math.nan
    predicted = [{**dict.fromkeys(METRICS, nan), "ttft_ms_p50": 110.0, "tpot_ms_mean": 5.0},
                 {**dict.fromkeys(METRICS, nan), "ttft_ms_p50": 40.0, "tpot_ms_mean": 7.0},
                 {**dict.fromkeys(METRICS, nan), "ttft_ms_p50": 200.0, "tpot_ms_mean": 21.0}]
    slices = {s.label: s for s in metric_errors(rows, predicted)}
    assert list(slices) == ["ttft_ms_p50", "tpot_ms_mean"]
    ttft = slices["ttft_ms_p50"]  # APEs 10, 20, 0
    assert (ttft.num_rows, ttft.median_ape_pct, ttft.p90_ape_pct, ttft.max_ape_pct) == (3, 10.0, pytest.approx(18.0), 20.0)
    tpot = slices["tpot_ms_mean"]  # APEs 50, 5 (b not measured)
    assert (tpot.num_rows, tpot.median_ape_pct, tpot.max_ape_pct) == (2, 27.5, 50.0)
    worst = worst_errors(rows, predicted, count=3)
    assert [(w.case_id, w.metric, w.error_pct) for w in worst] == [
        ("a", "tpot_ms_mean", -50.0), ("b", "ttft_ms_p50", -20.0), ("a", "ttft_ms_p50", pytest.approx(10.0))]


def test_validate_bench_writes_predictions_errors_and_plot(tmp_path):
    header = HEADER + ",measured_ttft_ms_mean,measured_e2e_ms_p50"
    src = write(tmp_path / "m.csv", header, [ROWS[0] + ",10,100", ROWS[1] + ",,300"])
    out = tmp_path / "v"
    result = CliRunner().invoke(app, ["validate-bench", str(src), "--out", str(out), "--json", "--jobs", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [m["label"] for m in report["metrics"]] == ["ttft_ms_mean", "e2e_ms_p50"]
    assert [m["num_rows"] for m in report["metrics"]] == [1, 2]
    _, predicted = read_out(out / "predictions.csv")
    measured, got = 100.0, float(predicted[0]["e2e_ms_p50"])
    e2e_row = next(w for w in report["worst_rows"] if w["case_id"] == "c1" and w["metric"] == "e2e_ms_p50")
    assert e2e_row["error_pct"] == pytest.approx(100 * (got - measured) / measured, rel=1e-4)
    assert (out / "parity.png").stat().st_size > 0 and json.loads((out / "errors.json").read_text())["metrics"]


def test_validate_bench_tables_and_bad_measured_cell(tmp_path, capsys):
    header = HEADER + ",measured_ttft_ms_p50"
    src = write(tmp_path / "m.csv", header, [ROWS[0] + ",12"])
    result = CliRunner().invoke(app, ["validate-bench", str(src), "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ttft_ms_p50" in result.output and "worst rows" in result.output
    src = write(tmp_path / "bad.csv", header, [ROWS[0] + ",fast"])
    err = run_main(capsys, "validate-bench", str(src))
    assert err == f"error: {src} row 1 (line 2): column 'measured_ttft_ms_p50' = 'fast': must be a number >= 0 (or empty: not measured)"
    src = write(tmp_path / "none.csv", HEADER, ROWS[:1])
    assert "no measured column" in run_main(capsys, "validate-bench", str(src))
