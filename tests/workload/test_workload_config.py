"""Workload config models: defaults, discriminated union, field validation."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from servesim.errors import ConfigError
from servesim.workload import SyntheticWorkloadConfig, TraceWorkloadConfig, WorkloadConfig
from servesim.workload.config import ArrivalConfig, LengthConfig, parse_workload_config

SYNTH = {
    "kind": "synthetic",
    "num_requests": 10,
    "arrival": {"process": "poisson", "rate_rps": 2.0},
    "prompt_tokens": {"dist": "fixed", "value": 100},
    "output_tokens": {"dist": "uniform", "low": 1, "high": 8},
}


def test_union_dispatches_on_kind():
    adapter = TypeAdapter(WorkloadConfig)
    assert isinstance(adapter.validate_python({"kind": "trace", "path": "x.csv"}), TraceWorkloadConfig)
    assert isinstance(adapter.validate_python(SYNTH), SyntheticWorkloadConfig)


def test_trace_defaults():
    cfg = parse_workload_config({"kind": "trace", "path": "builtin:azure-2023-conv"})
    assert cfg.format == "auto" and cfg.rate_scale == 1.0 and cfg.sample_fraction == 1.0
    assert cfg.window_start_s is None and cfg.window_end_s is None and cfg.max_requests is None
    assert cfg.on_bad_row == "skip" and cfg.burstgpt_failed == "skip"
    assert cfg.burstgpt_model is None and cfg.burstgpt_log_type is None


def test_models_are_frozen_and_forbid_extra():
    cfg = parse_workload_config(SYNTH)
    with pytest.raises(ValidationError):
        cfg.num_requests = 3
    with pytest.raises(ConfigError, match=r"workload\.speed: Extra inputs are not permitted"):
        parse_workload_config({"kind": "trace", "path": "x", "speed": 2})


def test_every_field_has_a_description():
    for model in (TraceWorkloadConfig, SyntheticWorkloadConfig, ArrivalConfig, LengthConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ({"rate_scale": 0}, "workload.rate_scale: Input should be greater than 0 (value 0)"),
        ({"sample_fraction": 1.5}, "workload.sample_fraction"),
        ({"sample_fraction": 0}, "workload.sample_fraction"),
        ({"max_requests": 0}, "workload.max_requests"),
        ({"window_start_s": 10, "window_end_s": 5}, "window_end_s=5.0 must be greater than window_start_s=10.0"),
        ({"format": "csv"}, "workload.format"),
        ({"on_bad_row": "warn"}, "workload.on_bad_row"),
    ],
)
def test_trace_config_errors(patch, fragment):
    with pytest.raises(ConfigError) as info:
        parse_workload_config({"kind": "trace", "path": "x.csv", **patch})
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "length, fragment",
    [
        ({"dist": "fixed"}, "prompt_tokens: dist='fixed' needs field 'value' (got value=None)"),
        ({"dist": "uniform", "low": 5}, "dist='uniform' needs field 'high'"),
        ({"dist": "uniform", "low": 5, "high": 4}, "low <= high (got low=5, high=4)"),
        ({"dist": "lognormal", "median": 100}, "needs field 'sigma'"),
        ({"dist": "empirical", "trace": "builtin:azure-2023-conv"}, "needs field 'column'"),
        ({"dist": "fixed", "value": 3, "low": 1}, "field low=1 is not used by dist='fixed'"),
        ({"dist": "fixed", "value": 3, "min": 9, "max": 2}, "min=9 must be <= max=2"),
        ({"dist": "fixed", "value": 0}, "prompt_tokens.value: Input should be greater than or equal to 1 (value 0)"),
    ],
)
def test_length_config_errors_name_field_and_value(length, fragment):
    with pytest.raises(ConfigError) as info:
        parse_workload_config({**SYNTH, "prompt_tokens": length})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_arrival_errors():
    with pytest.raises(ConfigError, match=r"arrival\.rate_rps"):
        parse_workload_config({**SYNTH, "arrival": {"process": "poisson", "rate_rps": 0}})
    with pytest.raises(ConfigError, match="cv=2.0 is only used with process='gamma'"):
        parse_workload_config({**SYNTH, "arrival": {"process": "poisson", "rate_rps": 1, "cv": 2}})


def test_unknown_kind():
    with pytest.raises(ConfigError, match="'bogus'"):
        parse_workload_config({"kind": "bogus"})
