"""RequestTable, TimeSeries(Builder), RunInfo and SloTargets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from servesim.metrics import (
    FINISHED,
    IN_FLIGHT,
    REJECTED,
    RequestTable,
    RunInfo,
    SloTargets,
    TimeSeries,
    TimeSeriesBuilder,
)

NAN = math.nan


def table(**overrides):
    """Three requests: finished with 3 tokens, finished with 1 token, in flight."""
    cols = dict(
        request_id=[0, 1, 2],
        arrival_s=[0.0, 1.0, 2.0],
        prompt_tokens=[5, 6, 7],
        output_tokens=[3, 1, 4],
        tokens_generated=[3, 1, 2],
        replica=[0, 1, 0],
        status=[FINISHED, FINISHED, IN_FLIGHT],
        reject_reason=["", "", ""],
        first_scheduled_s=[0.25, 1.0, 2.5],
        first_token_s=[0.5, 1.5, 3.0],
        finish_s=[1.5, 1.5, NAN],
        max_itl_s=[0.75, NAN, 0.5],
        num_preemptions=[0, 0, 1],
    )
    cols.update(overrides)
    return RequestTable(**cols)


def test_columns_are_cast_to_their_dtypes():
    t = table()
    assert len(t) == 3
    assert t.request_id.dtype == np.int64
    assert t.arrival_s.dtype == np.float64
    assert t.status.dtype == np.int8
    assert t.reject_reason.dtype == object
    assert list(t.columns()) == [
        "request_id", "arrival_s", "prompt_tokens", "output_tokens", "tokens_generated",
        "replica", "status", "reject_reason", "first_scheduled_s", "first_token_s",
        "finish_s", "max_itl_s", "num_preemptions", "cached_tokens",
    ]
    assert t.cached_tokens.tolist() == [0, 0, 0]  # tables built without the column get zeros


def test_column_length_mismatch_is_rejected():
    with pytest.raises(ValueError, match="finish_s has 2 rows, expected 3"):
        table(finish_s=[1.0, 2.0])


def test_two_dimensional_column_is_rejected():
    with pytest.raises(ValueError, match="must be 1-D"):
        table(request_id=[[0, 1, 2]])


def test_derived_latencies():
    t = table()
    np.testing.assert_array_equal(t.ttft_s(), [0.5, 0.5, 1.0])
    np.testing.assert_array_equal(t.e2e_s(), [1.5, 0.5, NAN])
    np.testing.assert_array_equal(t.queue_delay_s(), [0.25, 0.0, 0.5])
    # (1.5 - 0.5) / (3 - 1) = 0.5; one token -> NaN; in flight -> NaN even with 2 tokens.
    np.testing.assert_array_equal(t.tpot_s(), [0.5, NAN, NAN])
    assert list(t.derived_columns()) == ["ttft_s", "tpot_s", "e2e_s", "queue_delay_s"]


def test_rejected_request_has_nan_latencies():
    t = table(
        status=[FINISHED, FINISHED, REJECTED],
        reject_reason=["", "", "too_long"],
        first_scheduled_s=[0.25, 1.0, NAN],
        first_token_s=[0.5, 1.5, NAN],
        max_itl_s=[0.75, NAN, NAN],
        tokens_generated=[3, 1, 0],
    )
    assert math.isnan(t.ttft_s()[2]) and math.isnan(t.tpot_s()[2])
    assert math.isnan(t.queue_delay_s()[2]) and math.isnan(t.e2e_s()[2])


def test_empty_table():
    t = RequestTable(**{name: [] for name in table().columns()})
    assert len(t) == 0
    assert t.tpot_s().shape == (0,)


def test_timeseries_builder_round_trip():
    b = TimeSeriesBuilder()
    assert len(b) == 0
    b.append(0.0, 0, 1, 2, 3, 100)
    b.append(0.5, 1, 4, 5, 6, 200)
    assert len(b) == 2
    ts = b.build()
    assert isinstance(ts, TimeSeries) and len(ts) == 2
    np.testing.assert_array_equal(ts.time_s, [0.0, 0.5])
    np.testing.assert_array_equal(ts.replica, [0, 1])
    np.testing.assert_array_equal(ts.queue_len, [1, 4])
    np.testing.assert_array_equal(ts.running, [2, 5])
    np.testing.assert_array_equal(ts.kv_used_blocks, [3, 6])
    np.testing.assert_array_equal(ts.kv_total_blocks, [100, 200])
    assert ts.time_s.dtype == np.float64 and ts.kv_total_blocks.dtype == np.int64
    # build() copies: later appends do not change an already built series.
    b.append(1.0, 0, 0, 0, 0, 100)
    assert len(ts) == 2 and len(b.build()) == 3


def test_empty_timeseries_builder():
    ts = TimeSeriesBuilder().build()
    assert len(ts) == 0 and ts.replica.dtype == np.int64


def test_run_info_checks_busy_time_shape():
    info = RunInfo(
        sim_time_s=1.0, horizon_s=None, wall_time_s=0.1, num_replicas=2,
        gpus_per_replica=1, busy_time_s=[0.5, 0.25], num_steps=3,
    )
    assert info.busy_time_s.dtype == np.float64
    assert info.price_usd_per_gpu_hr is None and info.workload_skipped == {}
    with pytest.raises(ValueError, match="busy_time_s"):
        RunInfo(
            sim_time_s=1.0, horizon_s=None, wall_time_s=0.1, num_replicas=2,
            gpus_per_replica=1, busy_time_s=[0.5], num_steps=3,
        )


def test_slo_targets_validation():
    assert SloTargets() == SloTargets(ttft_s=None, tpot_s=None, e2e_s=None)
    assert not SloTargets().any_set
    slo = SloTargets(ttft_s=0.5, tpot_s=0.05)
    assert slo.any_set and slo.e2e_s is None
    for bad in ({"ttft_s": 0.0}, {"tpot_s": -1.0}, {"e2e_s": math.inf}, {"p99": 1.0}):
        with pytest.raises(ValidationError):
            SloTargets(**bad)
    with pytest.raises(ValidationError):
        slo.ttft_s = 1.0  # frozen
    assert all(f.description for f in SloTargets.model_fields.values())
