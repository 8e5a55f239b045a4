"""summarize(): every figure checked against hand-computed values.

The sample run (2 replicas x 4 GPUs, sim ends at 7 s):

    id arrive status     tokens sched  1st tok finish  max_itl preempt
    0  0.0    finished   4/4    0.5    1.0     2.5     0.6     0
    1  1.0    finished   1/1    1.0    1.5     1.5     NaN     0
    2  2.0    finished   3/3    3.0    4.0     6.0     1.5     2
    3  3.0    rejected   0/5    -      -       -       NaN     0
    4  4.0    in flight  2/8    5.0    6.0     -       0.25    1

Finished: ttft [1.0, 0.5, 2.0], e2e [2.5, 0.5, 4.0], queue [0.5, 0.0, 1.0],
tpot [(2.5-1)/3 = 0.5, NaN (1 token), (6-4)/2 = 1.0], max_itl [0.6, NaN, 1.5].
Span = last finish 6.0 - first arrival 0.0 = 6.0 s.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import (
    FINISHED,
    IN_FLIGHT,
    REJECTED,
    RUN_VARYING_KEYS,
    RequestTable,
    RunInfo,
    SloTargets,
    TimeSeries,
    deterministic_view,
    describe,
    slo_met,
    summarize,
)

NAN = math.nan
approx = pytest.approx


def sample_requests() -> RequestTable:
    return RequestTable(
        request_id=[0, 1, 2, 3, 4],
        arrival_s=[0.0, 1.0, 2.0, 3.0, 4.0],
        prompt_tokens=[10, 20, 30, 40, 50],
        output_tokens=[4, 1, 3, 5, 8],
        tokens_generated=[4, 1, 3, 0, 2],
        replica=[0, 1, 0, -1, 1],
        status=[FINISHED, FINISHED, FINISHED, REJECTED, IN_FLIGHT],
        reject_reason=["", "", "", "kv_capacity", ""],
        first_scheduled_s=[0.5, 1.0, 3.0, NAN, 5.0],
        first_token_s=[1.0, 1.5, 4.0, NAN, 6.0],
        finish_s=[2.5, 1.5, 6.0, NAN, NAN],
        max_itl_s=[0.6, NAN, 1.5, NAN, 0.25],
        num_preemptions=[0, 0, 2, 0, 1],
    )


def sample_timeseries() -> TimeSeries:
    return TimeSeries(
        time_s=[0.0, 1.0, 2.0, 3.0],
        replica=[0, 1, 0, 1],
        queue_len=[0, 2, 3, 1],
        running=[1, 0, 3, 2],
        kv_used_blocks=[10, 0, 40, 30],
        kv_total_blocks=[100, 50, 100, 50],
    )


def sample_info(**overrides) -> RunInfo:
    kw = dict(
        sim_time_s=7.0, horizon_s=7.0, wall_time_s=0.5, num_replicas=2, gpus_per_replica=4,
        busy_time_s=[3.5, 1.4], num_steps=42, price_usd_per_gpu_hr=3.0,
        workload_skipped={"zero_output_tokens": 2},
    )
    kw.update(overrides)
    return RunInfo(**kw)


SLO = SloTargets(ttft_s=1.0, tpot_s=0.6)


@pytest.fixture
def summary():
    return summarize(sample_requests(), sample_timeseries(), sample_info(), SLO)


def test_counts(summary):
    assert summary["num_requests"] == 5
    assert summary["num_finished"] == 3
    assert summary["num_rejected"] == 1
    assert summary["num_in_flight"] == 1
    assert summary["rejected_by_reason"] == {"kv_capacity": 1}
    assert summary["num_preemptions"] == 3


def test_latency_distributions(summary):
    # sorted ttft [0.5, 1, 2]: p90 at position 1.8 -> 1 + 0.8 * (2 - 1).
    assert summary["ttft_s"] == {
        "count": 3, "mean": approx(3.5 / 3), "p50": 1.0, "p90": approx(1.8),
        "p99": approx(1.98), "max": 2.0,
    }
    # NaN tpot of the 1-token request is dropped: [0.5, 1.0].
    assert summary["tpot_s"] == {
        "count": 2, "mean": 0.75, "p50": 0.75, "p90": approx(0.95), "p99": approx(0.995), "max": 1.0,
    }
    # sorted e2e [0.5, 2.5, 4]: p90 at 1.8 -> 2.5 + 0.8 * 1.5.
    assert summary["e2e_s"] == {
        "count": 3, "mean": approx(7 / 3), "p50": 2.5, "p90": approx(3.7), "p99": approx(3.97), "max": 4.0,
    }
    assert summary["queue_delay_s"] == {
        "count": 3, "mean": 0.5, "p50": 0.5, "p90": approx(0.9), "p99": approx(0.99), "max": 1.0,
    }
    # In-flight request's max_itl (0.25) is excluded: only finished ones count.
    assert summary["max_itl_s"]["count"] == 2
    assert summary["max_itl_s"]["mean"] == approx(1.05)
    assert summary["max_itl_s"]["max"] == 1.5


def test_throughput_over_span(summary):
    assert summary["span_s"] == 6.0
    assert summary["requests_per_s"] == approx(3 / 6)
    assert summary["input_tokens_per_s"] == approx(60 / 6)
    assert summary["output_tokens_per_s"] == approx(8 / 6)


def test_slo_attainment_and_goodput(summary):
    # 0 meets (ttft 1.0 <= 1.0 inclusive, tpot 0.5), 1 meets (1 token passes
    # tpot), 2 misses ttft, 3 rejected, 4 in flight: 2 of 5.
    assert summary["slo"] == {
        "targets": {"ttft_s": 1.0, "tpot_s": 0.6, "e2e_s": None},
        "num_met": 2,
        "attainment": approx(0.4),
        "goodput_rps": approx(2 / 6),
    }


def test_slo_mask_per_request():
    r = sample_requests()
    np.testing.assert_array_equal(slo_met(r, SLO), [True, True, False, False, False])
    # No target: every finished request meets it, the rejected one still misses.
    np.testing.assert_array_equal(slo_met(r, SloTargets()), [True, True, True, False, False])
    np.testing.assert_array_equal(slo_met(r, SloTargets(e2e_s=2.5)), [True, True, False, False, False])
    np.testing.assert_array_equal(slo_met(r, SloTargets(tpot_s=0.4)), [False, True, False, False, False])


def test_rejected_request_is_an_slo_miss_even_with_lenient_targets():
    s = summarize(
        sample_requests(), sample_timeseries(), sample_info(),
        SloTargets(ttft_s=1e9, tpot_s=1e9, e2e_s=1e9),
    )
    assert s["slo"]["num_met"] == 3
    assert s["slo"]["attainment"] == approx(3 / 5)


def test_utilization_batch_queue_kv(summary):
    assert summary["utilization"] == {"mean": approx(0.35), "per_replica": [approx(0.5), approx(0.2)]}
    assert summary["mean_running_batch"] == 2.0  # samples with running > 0: [1, 3, 2]
    assert summary["peak_queue_len"] == 3
    assert summary["peak_kv_usage"] == approx(0.6)  # 30 / 50


def test_run_fields_and_cost(summary):
    assert summary["sim_time_s"] == 7.0
    assert summary["horizon_s"] == 7.0
    assert summary["wall_time_s"] == 0.5
    assert summary["num_steps"] == 42
    assert summary["num_replicas"] == 2 and summary["gpus_per_replica"] == 4
    assert summary["simulated_requests_per_wall_s"] == 10.0
    assert summary["workload_skipped"] == {"zero_output_tokens": 2}
    # 2 replicas * 4 GPUs * 6 s = 48 GPU-s; $3/GPU-h; 8 output tokens.
    assert summary["cost"] == {
        "gpu_hours": approx(48 / 3600),
        "price_usd_per_gpu_hr": 3.0,
        "usd": approx(0.04),
        "usd_per_million_output_tokens": approx(5000.0),
    }


def test_cost_without_price():
    s = summarize(sample_requests(), sample_timeseries(), sample_info(price_usd_per_gpu_hr=None), SLO)
    assert s["cost"]["gpu_hours"] == approx(48 / 3600)
    assert s["cost"]["usd"] is None and s["cost"]["usd_per_million_output_tokens"] is None


def test_summary_is_strict_json_with_python_types(summary):
    text = json.dumps(summary, allow_nan=False, sort_keys=True)
    assert json.loads(text) == json.loads(json.dumps(summary))


def test_deterministic_view_drops_only_run_varying_keys(summary):
    view = deterministic_view(summary)
    assert set(summary) - set(view) == set(RUN_VARYING_KEYS)
    other = summarize(sample_requests(), sample_timeseries(), sample_info(wall_time_s=9.0), SLO)
    assert other != summary
    assert deterministic_view(other) == view


def test_empty_run_has_no_nan():
    empty = RequestTable(**{name: [] for name in sample_requests().columns()})
    no_samples = TimeSeries(**{name: [] for name in sample_timeseries().columns()})
    info = sample_info(sim_time_s=0.0, wall_time_s=0.0, busy_time_s=[0.0, 0.0], num_steps=0)
    s = summarize(empty, no_samples, info, SLO)
    json.dumps(s, allow_nan=False)
    assert s["num_requests"] == 0 and s["rejected_by_reason"] == {}
    assert s["ttft_s"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    for key in ("span_s", "requests_per_s", "output_tokens_per_s", "mean_running_batch",
                "peak_queue_len", "peak_kv_usage", "simulated_requests_per_wall_s"):
        assert s[key] is None, key
    assert s["slo"]["attainment"] is None and s["slo"]["goodput_rps"] is None
    assert s["utilization"] == {"mean": None, "per_replica": [None, None]}
    assert s["cost"]["gpu_hours"] is None and s["cost"]["usd"] is None


def test_nothing_finished():
    r = sample_requests()
    cols = r.columns()
    cols["status"] = np.full(5, IN_FLIGHT)
    cols["finish_s"] = np.full(5, NAN)
    s = summarize(RequestTable(**cols), sample_timeseries(), sample_info(), SLO)
    json.dumps(s, allow_nan=False)
    assert s["num_in_flight"] == 5 and s["num_finished"] == 0
    assert s["span_s"] is None and s["requests_per_s"] is None
    assert s["slo"]["num_met"] == 0 and s["slo"]["attainment"] == 0.0
    assert s["utilization"]["mean"] == approx(0.35)  # window is first arrival -> sim end


def test_describe_single_value_and_all_nan():
    assert describe(np.array([2.0])) == {"count": 1, "mean": 2.0, "p50": 2.0, "p90": 2.0, "p99": 2.0, "max": 2.0}
    assert describe(np.array([NAN, NAN]))["mean"] is None


@st.composite
def random_tables(draw):
    n = draw(st.integers(0, 8))
    status = draw(st.lists(st.sampled_from([FINISHED, REJECTED, IN_FLIGHT]), min_size=n, max_size=n))
    arrival = np.cumsum(draw(st.lists(st.floats(0, 5), min_size=n, max_size=n)))
    gen = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64)
    finished = np.array(status, dtype=np.int8) == FINISHED
    gen = np.where(finished, np.maximum(gen, 1), gen)
    first = np.where(gen > 0, arrival + 0.5, NAN)
    finish = np.where(finished, first + gen * 0.1, NAN)
    return RequestTable(
        request_id=np.arange(n), arrival_s=arrival, prompt_tokens=np.full(n, 3),
        output_tokens=np.maximum(gen, 1), tokens_generated=gen, replica=np.zeros(n),
        status=status, reject_reason=["full" if s == REJECTED else "" for s in status],
        first_scheduled_s=arrival + 0.25, first_token_s=first, finish_s=finish,
        max_itl_s=np.where(gen >= 2, 0.1, NAN), num_preemptions=np.zeros(n),
    )


@settings(max_examples=60, deadline=None)
@given(random_tables(), st.floats(0.0, 3.0))
def test_any_table_gives_strict_json(requests, wall):
    info = sample_info(num_replicas=1, busy_time_s=[1.0], wall_time_s=wall)
    s = summarize(requests, sample_timeseries(), info, SloTargets(ttft_s=0.6, tpot_s=0.1))
    json.dumps(s, allow_nan=False)
    assert s["num_finished"] + s["num_rejected"] + s["num_in_flight"] == s["num_requests"]
    assert s["slo"]["num_met"] <= s["num_finished"]
