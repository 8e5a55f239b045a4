"""Search metric names are checked before any trial runs (servesim.metrics.names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.errors import ConfigError
from servesim.metrics.names import check_metric_names
from servesim.sweep.store import flatten_summary

GOLDEN = Path(__file__).parents[1] / "golden" / "small_scenario.json"


def test_every_metric_of_a_real_summary_is_accepted():
    names = list(flatten_summary(json.loads(GOLDEN.read_text(encoding="utf-8"))))
    assert "ttft_s__p99" in names and "slo__goodput_rps" in names
    check_metric_names(names, ["cost_usd_per_hr", "num_gpus", "axis__cluster__num_replicas", "fleet__availability"])


@pytest.mark.parametrize(
    ("objectives", "constraints", "message"),
    [
        (["ttft_s__p999"], [], "objectives.0.metric = 'ttft_s__p999': ttft_s is a distribution: did you mean ttft_s__p99?"),
        (["cost_usd_per_hr"], [{"metric": "tft_s__p99"}], "constraints.0.metric = 'tft_s__p99': not a metric of the "
         "run's summary; did you mean ttft_s__p99"),
        (["goodput_rps"], [], "objectives.0.metric = 'goodput_rps': not a metric of the run's summary; "),
        (["cost_usd_per_hr", "ttft"], [], "objectives.1.metric = 'ttft': not a metric"),
    ],
)
def test_a_misspelt_metric_is_one_line_naming_the_field_and_a_suggestion(objectives, constraints, message):
    with pytest.raises(ConfigError) as info:
        check_metric_names(objectives, [c["metric"] for c in constraints])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
