"""The step-time commands end to end: predict-steps, validate, calibrate, and a scenario
that references a calibration file."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

import servesim
from servesim.cli import app, main
from servesim.errors import ConfigError
from servesim.perf import Catalog, StepTimeParams
from servesim.perf.calibration_file import load_calibration
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import read_steps_csv

runner = CliRunner()
H100 = Catalog.default().hardware("h100")
COLUMNS = "model,kind,prefill_lens,decode_batch,decode_ctx,graphed,median_ms,run\n"
# Slower than the defaults everywhere: weaker GEMMs and attention, costlier kernels.
SLOW = StepTimeParams(gemm_efficiency=0.5, attn_flops_efficiency=0.3, per_layer_overhead_s=150e-6, mem_bw_efficiency=0.7)


def grid_lines() -> list[str]:
    lines = []
    for lens in ("128", "1024", "4096", "16384", "+".join(["512"] * 8), "+".join(["2048"] * 4)):
        lines.append(f"llama-3-8b,prefill,{lens},0,0,0")
    for ctx in (512, 4096):
        for batch in (1, 16, 128):
            lines += [f"llama-3-8b,decode,,{batch},{ctx},1", f"llama-3-8b,decode,,{batch},{ctx},0"]
    lines += ["llama-3-8b,mixed,512,32,2048,0", "llama-3-8b,mixed,256+256,16,4096,0"]
    for batch in (1, 64, 256):
        lines.append(f"llama-3-70b,decode,,{batch},1024,1")
    return lines


def measured_csv(path, params: StepTimeParams):
    """A steps CSV whose median_ms are the model's own predictions under ``params``."""
    header = COLUMNS.replace(",median_ms,run", "") + "\n"
    bare = path.with_suffix(".bare.csv")
    bare.write_text(header.strip() + "\n" + "\n".join(grid_lines()) + "\n", encoding="utf-8")
    rows = read_steps_csv(bare).rows
    times = StepPricer(rows, H100).times_s(params)
    body = "".join(f"{line},{t * 1e3:.6f},r{i}\n" for i, (line, t) in enumerate(zip(grid_lines(), times)))
    path.write_text(COLUMNS + body, encoding="utf-8")
    return path


def run_main(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


# ----------------------------------------------------------- predict-steps
def test_predict_steps_keeps_columns_and_adds_named_parts(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(
        "model,kind,prefill_lens,decode_batch,decode_ctx,graphed,num_layers,note\n"
        "llama-3-8b,prefill,8192,0,0,0,,full\n"
        "llama-3-8b,prefill,8192,0,0,0,16,half\n"
        "qwen2.5-7b,decode,,32,2048,1,,q\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict-steps", str(src), "--hardware", "h100", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [
        "model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "graphed", "num_layers", "note",
        "predicted_ms", "gemm_ms", "elementwise_ms", "attention_prefill_ms", "attention_decode_ms",
        "communication_ms", "overhead_ms",
    ]
    assert [r["note"] for r in rows] == ["full", "half", "q"] and rows[1]["num_layers"] == "16"
    for r in rows:
        parts = sum(float(r[k]) for k in ("gemm_ms", "elementwise_ms", "attention_prefill_ms",
                                          "attention_decode_ms", "communication_ms", "overhead_ms"))
        assert float(r["predicted_ms"]) == pytest.approx(parts, rel=1e-5)
    # Halving the layers halves the layers' GEMM work; the lm_head (one row, memory-bound) stays.
    head_ms = 2 * 128256 * 4096 / (3350e9 * StepTimeParams().mem_bw_efficiency) * 1e3
    full, half = (float(r["gemm_ms"]) - head_ms for r in rows[:2])
    assert half == pytest.approx(full / 2, rel=1e-5)


def test_predict_steps_bad_row_is_one_error_line(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("model,kind,prefill_lens,decode_batch,decode_ctx,graphed\nllama-3-8b,decode,,x,10,1\n")
    code, err = run_main(["predict-steps", str(src), "--hardware", "h100", "-o", str(tmp_path / "o.csv")], capsys)
    assert code == 2
    assert err == "error: in.csv row 1 (line 2): column 'decode_batch' = 'x': must be an integer from 0 to 1,000,000\n"
    src.write_text("model,kind,prefill_lens,decode_batch,decode_ctx,graphed\nllama-9,decode,,1,10,1\n")
    code, err = run_main(["predict-steps", str(src), "--hardware", "h100", "-o", str(tmp_path / "o.csv")], capsys)
    assert code == 2 and err.startswith("error: row 1 (line 2): column 'model' = 'llama-9': unknown model")
    code, err = run_main(["predict-steps", str(src), "--hardware", "h900", "-o", str(tmp_path / "o.csv")], capsys)
    assert code == 2 and "unknown hardware 'h900'" in err


# ----------------------------------------------------------------- validate
def test_validate_prints_the_table_and_writes_plot_page_and_tables(tmp_path):
    steps = measured_csv(tmp_path / "m.csv", StepTimeParams())
    out = tmp_path / "report"
    result = runner.invoke(app, ["validate", str(steps), "--hardware", "h100", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "decode graphed" in result.output and "worst rows" in result.output
    # The rows are the default model's own predictions: zero error up to rounding.
    assert "    0.0%" in result.output
    assert (out / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "parity.html").read_text()
    assert "<svg" in page and "<script" not in page and "Worst rows" in page and "prefill eager" in page
    errors = json.loads((out / "errors.json").read_text())
    assert [s["label"] for s in errors["slices"]] == ["prefill eager", "decode graphed", "decode eager", "mixed eager", "prefill >=1024 tok", "all"]
    with (out / "predictions.csv").open(newline="") as handle:
        first = next(csv.DictReader(handle))
    assert first["run"] == "r0" and float(first["ape_pct"]) < 0.01


def test_validate_json_and_logo(tmp_path):
    steps = measured_csv(tmp_path / "m.csv", SLOW)
    result = runner.invoke(app, ["validate", str(steps), "--hardware", "h100", "--json"])
    plain = json.loads(result.output)
    # Defaults are faster than the SLOW rows: a large error ...
    assert plain["mode"] == "default parameters" and plain["slices"][-1]["median_ape_pct"] > 10
    result = runner.invoke(app, ["validate", str(steps), "--hardware", "h100", "--json", "--logo"])
    logo = json.loads(result.output)
    # ... that held-out fits remove: each group predicted from the others.
    assert logo["mode"] == "leave-one-group-out" and logo["slices"][-1]["median_ape_pct"] < 2
    assert len(logo["worst_rows"]) == 10


# ---------------------------------------------------------------- calibrate
def scenario(tmp_path, **extra) -> dict:
    return {
        "name": "cal",
        "seed": 3,
        "workload": {
            "kind": "synthetic",
            "num_requests": 60,
            "arrival": {"process": "poisson", "rate_rps": 4.0},
            "prompt_tokens": {"dist": "uniform", "low": 200, "high": 2000},
            "output_tokens": {"dist": "uniform", "low": 5, "high": 50},
        },
        **extra,
    }


def test_calibrate_writes_a_file_a_scenario_can_use(tmp_path):
    steps = measured_csv(tmp_path / "slow.csv", SLOW)
    cal_path = tmp_path / "cal" / "slow.yaml"
    cal_path.parent.mkdir()
    result = runner.invoke(app, ["calibrate", str(steps), "--hardware", "h100", "-o", str(cal_path), "--logo"])
    assert result.exit_code == 0, result.output
    assert "in-sample error" in result.output and "leave-one-group-out error" in result.output
    cal = load_calibration(cal_path)
    assert cal.hardware == "h100" and cal.source == "slow.csv" and cal.num_rows == len(grid_lines())
    assert cal.servesim_version == servesim.__version__
    # The fitted parameters reproduce the SLOW rows (not necessarily SLOW's values:
    # the prior keeps gemm_efficiency near 0.8 where other parameters can absorb it).
    assert cal.fit["in_sample"][-1]["median_ape_pct"] < 2
    # A scenario next to the calibration folder names it by a relative path.
    scen = tmp_path / "scen.yaml"
    scen.write_text(yaml.safe_dump(scenario(tmp_path, calibration="cal/slow.yaml")))
    fast = servesim.simulate(scenario(tmp_path))
    slow = servesim.simulate(scen)
    assert slow.deployment.step_model.params.gemm_efficiency == cal.params["gemm_efficiency"]
    # Slower steps: every latency grows.
    assert slow.summary["ttft_s"]["mean"] > 1.2 * fast.summary["ttft_s"]["mean"]
    assert slow.summary["tpot_s"]["mean"] > fast.summary["tpot_s"]["mean"]
    # The config the run records holds the calibrated values: re-running it changes nothing.
    again = servesim.simulate(slow.config.to_dict())
    assert again.summary["ttft_s"] == slow.summary["ttft_s"]


def test_explicit_perf_fields_beat_the_calibration_and_the_gpu_must_match(tmp_path):
    steps = measured_csv(tmp_path / "slow.csv", SLOW)
    cal_path = tmp_path / "slow.yaml"
    assert runner.invoke(app, ["calibrate", str(steps), "--hardware", "h100", "-o", str(cal_path)]).exit_code == 0
    config = scenario(tmp_path, calibration=str(cal_path), perf={"gemm_efficiency": 0.9})
    params = servesim.simulate(config).deployment.step_model.params
    assert params.gemm_efficiency == 0.9
    assert params.per_layer_overhead_s == load_calibration(cal_path).params["per_layer_overhead_s"]
    other = scenario(tmp_path, calibration=str(cal_path), cluster={"hardware": "h200"})
    with pytest.raises(ConfigError, match="was fitted for hardware 'h100', but cluster.hardware is 'h200'"):
        servesim.simulate(other)


def test_predict_with_a_calibration_of_another_gpu_is_refused(tmp_path, capsys):
    steps = measured_csv(tmp_path / "m.csv", StepTimeParams())
    cal_path = tmp_path / "h100.yaml"
    assert runner.invoke(app, ["calibrate", str(steps), "--hardware", "h100", "-o", str(cal_path)]).exit_code == 0
    argv = ["predict-steps", str(steps), "--hardware", "h200", "-o", str(tmp_path / "o.csv"), "--calibration", str(cal_path)]
    code, err = run_main(argv, capsys)
    assert code == 2
    assert err == (
        f"error: calibration file {cal_path} was fitted for hardware 'h100', but --hardware is 'h200'; "
        "calibrate on that GPU's steps or drop the calibration\n"
    )
    # The same GPU: the calibrated parameters are used.
    argv[3] = "h100"
    assert runner.invoke(app, argv).exit_code == 0


def test_calibrate_refuses_fewer_rows_than_fitted_parameters(tmp_path, capsys):
    steps = measured_csv(tmp_path / "m.csv", StepTimeParams())
    lines = steps.read_text(encoding="utf-8").splitlines()
    steps.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")  # the header and 2 rows
    out = tmp_path / "cal.yaml"
    code, err = run_main(["calibrate", str(steps), "--hardware", "h100", "-o", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: steps file {steps}: 2 measured rows cannot fit 10 parameters; ")
    assert not out.exists()


def test_calibrate_refuses_a_bad_fit_unless_forced(tmp_path, capsys):
    # Steps 5x slower than any plausible H100 parameters can explain: the fit cannot follow.
    steps = measured_csv(tmp_path / "m.csv", StepTimeParams())
    lines = steps.read_text(encoding="utf-8").splitlines()
    body = []
    for line in lines[1:]:
        cells = line.split(",")
        cells[-2] = f"{float(cells[-2]) * (25 if len(body) % 2 else 0.2):.6f}"
        body.append(",".join(cells))
    steps.write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    out = tmp_path / "cal.yaml"
    argv = ["calibrate", str(steps), "--hardware", "h100", "-o", str(out)]
    code, err = run_main(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert err.startswith("error: the fit's median error is ") and "(over 25%)" in err
    assert err.endswith(f"{out} not written; pass --force to calibrate anyway\n")
    result = runner.invoke(app, [*argv, "--force"])
    assert result.exit_code == 0 and out.exists()
    assert "warning: the fit's median error is " in result.output


def test_calibrate_refuses_rows_of_another_gpu_unless_forced(tmp_path, capsys):
    steps = measured_csv(tmp_path / "m.csv", StepTimeParams())
    lines = steps.read_text(encoding="utf-8").splitlines()
    steps.write_text("\n".join([lines[0] + ",hardware", *(line + ",a100" for line in lines[1:])]) + "\n")
    out = tmp_path / "cal.yaml"
    argv = ["calibrate", str(steps), "--hardware", "h100", "-o", str(out)]
    code, err = run_main(argv, capsys)
    assert code == 2 and not out.exists()
    assert err == (
        f"error: steps file {steps}: its hardware column names 'a100', not --hardware 'h100'; "
        "pass --force to calibrate anyway\n"
    )
    result = runner.invoke(app, [*argv, "--force"])
    assert result.exit_code == 0 and out.exists()
    assert "warning: steps file " in result.output
