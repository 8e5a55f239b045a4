"""write_outputs(): file contents, round trips and byte-for-byte determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from servesim.metrics import (
    FINISHED,
    IN_FLIGHT,
    REJECTED,
    RequestTable,
    RunInfo,
    SloTargets,
    TimeSeriesBuilder,
    summarize,
)
from servesim.report import OUTPUT_FILES, deterministic_view, write_outputs

NAN = math.nan


def requests() -> RequestTable:
    return RequestTable(
        request_id=[0, 1, 2],
        arrival_s=[0.0, 0.5, 1.0],
        prompt_tokens=[8, 16, 32],
        output_tokens=[3, 2, 4],
        tokens_generated=[3, 0, 1],
        replica=[0, -1, 1],
        status=[FINISHED, REJECTED, IN_FLIGHT],
        reject_reason=["", "prompt_too_long", ""],
        first_scheduled_s=[0.25, NAN, 1.5],
        first_token_s=[0.5, NAN, 2.0],
        finish_s=[1.5, NAN, NAN],
        max_itl_s=[0.5, NAN, NAN],
        num_preemptions=[1, 0, 0],
    )


def timeseries():
    b = TimeSeriesBuilder()
    b.append(0.0, 0, 0, 1, 4, 64)
    b.append(0.5, 1, 1, 0, 0, 64)
    b.append(1.0, 0, 0, 1, 8, 64)
    return b.build()


def summary(wall_time_s: float = 0.01) -> dict:
    info = RunInfo(
        sim_time_s=2.5, horizon_s=2.5, wall_time_s=wall_time_s, num_replicas=2,
        gpus_per_replica=1, busy_time_s=[1.0, 0.5], num_steps=5, price_usd_per_gpu_hr=2.0,
    )
    return summarize(requests(), timeseries(), info, SloTargets(ttft_s=1.0))


CONFIG = {"seed": 7, "model": "llama-3-8b", "fleet": {"replicas": 2, "gpu": "h100"}, "a_last": [1, 2]}


def test_writes_the_four_files(tmp_path):
    paths = write_outputs(tmp_path / "out", requests(), timeseries(), summary(), CONFIG)
    assert {k: p.name for k, p in paths.items()} == OUTPUT_FILES
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())


def test_requests_parquet_has_stored_and_derived_columns(tmp_path):
    paths = write_outputs(tmp_path, requests(), timeseries(), summary(), CONFIG)
    t = pq.read_table(paths["requests"])
    assert t.column_names == [
        "request_id", "arrival_s", "prompt_tokens", "output_tokens", "tokens_generated",
        "replica", "status", "reject_reason", "first_scheduled_s", "first_token_s",
        "finish_s", "max_itl_s", "num_preemptions", "cached_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_delay_s",
    ]
    assert str(t.schema.field("status").type) == "int8"
    assert str(t.schema.field("reject_reason").type) == "string"
    assert t.column("reject_reason").to_pylist() == ["", "prompt_too_long", ""]
    np.testing.assert_array_equal(t.column("ttft_s").to_numpy(), [0.5, NAN, 1.0])
    np.testing.assert_array_equal(t.column("tpot_s").to_numpy(), [0.5, NAN, NAN])
    np.testing.assert_array_equal(t.column("e2e_s").to_numpy(), [1.5, NAN, NAN])
    np.testing.assert_array_equal(t.column("queue_delay_s").to_numpy(), [0.25, NAN, 0.5])
    # NaN stays a float NaN, not a parquet null.
    assert t.column("finish_s").null_count == 0


def test_timeseries_parquet_round_trips(tmp_path):
    paths = write_outputs(tmp_path, requests(), timeseries(), summary(), CONFIG)
    t = pq.read_table(paths["timeseries"])
    ts = timeseries()
    assert t.column_names == list(ts.columns())
    for name, col in ts.columns().items():
        np.testing.assert_array_equal(t.column(name).to_numpy(), col)


def test_summary_json_round_trips(tmp_path):
    s = summary()
    paths = write_outputs(tmp_path, requests(), timeseries(), s, CONFIG)
    text = paths["summary"].read_text()
    assert json.loads(text) == s
    assert text.endswith("}\n") and "NaN" not in text
    assert "wall_time_s" in json.loads(text)


def test_config_yaml_keeps_key_order(tmp_path):
    paths = write_outputs(tmp_path, requests(), timeseries(), summary(), CONFIG)
    text = paths["config"].read_text()
    assert yaml.safe_load(text) == CONFIG
    assert text.index("seed") < text.index("model") < text.index("fleet") < text.index("a_last")


def test_identical_inputs_give_identical_bytes(tmp_path):
    a = write_outputs(tmp_path / "a", requests(), timeseries(), summary(), CONFIG)
    b = write_outputs(tmp_path / "b", requests(), timeseries(), summary(), CONFIG)
    for key in OUTPUT_FILES:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_summary_json_differs_only_in_run_varying_keys(tmp_path):
    a = write_outputs(tmp_path / "a", requests(), timeseries(), summary(0.01), CONFIG)
    b = write_outputs(tmp_path / "b", requests(), timeseries(), summary(3.0), CONFIG)
    ja, jb = json.loads(a["summary"].read_text()), json.loads(b["summary"].read_text())
    assert ja != jb
    assert deterministic_view(ja) == deterministic_view(jb)
    for key in ("requests", "timeseries", "config"):
        assert a[key].read_bytes() == b[key].read_bytes()


def test_nan_in_summary_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_outputs(tmp_path, requests(), timeseries(), {"x": NAN}, CONFIG)
