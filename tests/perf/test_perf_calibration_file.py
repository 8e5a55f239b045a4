"""Calibration files: round trip, explicit `perf` fields winning, one-line errors."""

from __future__ import annotations

import pytest

from servesim.errors import ConfigError
from servesim.perf import StepTimeParams
from servesim.perf.calibration_file import Calibration, apply_calibration, calibration_yaml, load_calibration

CAL = Calibration(
    "h100",
    {"gemm_efficiency": 0.6, "per_layer_overhead_s": 5e-5, "cpu_gpu_overlap": 0.5},
    source="steps.csv",
    num_rows=12,
    servesim_version="0.1.0",
    fit={"noise": 0.1},
)


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text(calibration_yaml(CAL), encoding="utf-8")
    text = path.read_text()
    assert "unit: fraction of the dense tensor peak" in text and "unit: s per layer" in text
    assert load_calibration(path) == CAL


def test_calibration_replaces_defaults_but_not_explicit_fields():
    perf = StepTimeParams.model_validate({"gemm_efficiency": 0.9})
    out = apply_calibration(perf, CAL, "h100")
    assert out.gemm_efficiency == 0.9  # set under perf: wins
    assert out.per_layer_overhead_s == 5e-5 and out.cpu_gpu_overlap == 0.5
    assert out.mem_bw_efficiency == StepTimeParams().mem_bw_efficiency  # in neither
    # Applying again changes nothing: every field of the result counts as set.
    assert apply_calibration(out, Calibration("h100", {"cpu_gpu_overlap": 0.1}), "h100") == out


def test_calibration_for_another_gpu_is_one_clear_error():
    with pytest.raises(ConfigError) as err:
        apply_calibration(StepTimeParams(), CAL, "a100", "calibration file cal.yaml")
    assert str(err.value) == (
        "calibration file cal.yaml was fitted for hardware 'h100', but cluster.hardware is 'a100'; "
        "calibrate on that GPU's steps or drop the calibration"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("hardware: h100\nparams: {gemm_eff: {value: 0.5}}\n", "params.gemm_eff: unknown parameter"),
        ("hardware: h100\nparams: {gemm_efficiency: {value: fast}}\n", "params.gemm_efficiency = 'fast': must be a number"),
        ("params: {gemm_efficiency: 0.5}\n", "field 'hardware' must name a catalog GPU id"),
        ("hardware: h100\n", "field 'params' must map parameter names to values"),
        ("hardware: h100\nparams: [\n", "is not valid YAML"),
        ("format: other/2\nhardware: h100\nparams: {gemm_efficiency: 0.5}\n", "format 'other/2' is not"),
    ],
)
def test_bad_files_name_the_field(tmp_path, text, message):
    path = tmp_path / "cal.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_calibration(path)


def test_out_of_range_values_are_caught_when_applied():
    with pytest.raises(ConfigError, match=r"params.gemm_efficiency = 1.5: Input should be less than or equal to 1"):
        apply_calibration(StepTimeParams(), Calibration("h100", {"gemm_efficiency": 1.5}), "h100")
    with pytest.raises(ConfigError, match="cannot read calibration file"):
        load_calibration("/nonexistent/cal.yaml")
