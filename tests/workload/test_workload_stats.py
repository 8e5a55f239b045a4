"""trace_stats on hand-computed tiny workloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from servesim.workload import Request, Workload, trace_stats
from servesim.workload.stats import format_trace_stats


def tiny() -> Workload:
    # Arrivals 0, 1, 3, 7 s: gaps 1, 2, 4 (mean 7/3).
    rows = [
        Request(0.0, 100, 10, prefix_block_ids=(1, 2)),
        Request(1.0, 200, 20, prefix_block_ids=(1, 3)),
        Request(3.0, 300, 30, prefix_block_ids=(1, 2, 4)),
        Request(7.0, 400, 40, prefix_block_ids=(5,)),
    ]
    w = Workload.from_requests(rows, source="tiny")
    return Workload(**{**w.__dict__, "prefix_block_size": 16, "skipped": {"zero_output_tokens": 2}})


def test_hand_computed_values():
    s = trace_stats(tiny())
    assert s["num_requests"] == 4 and s["source"] == "tiny"
    assert s["skipped"] == {"zero_output_tokens": 2} and s["num_skipped"] == 2
    assert s["span_s"] == 7.0
    assert s["mean_rate_rps"] == pytest.approx(3 / 7)
    assert s["peak_rate_rps_60s"] == pytest.approx(4 / 60)
    gaps = np.array([1.0, 2.0, 4.0])
    assert s["interarrival_cv"] == pytest.approx(gaps.std() / gaps.mean())
    assert s["prompt_tokens"] == {"mean": 250.0, "p50": 250.0, "p90": 370.0, "p99": 397.0, "max": 400}
    assert s["output_tokens"]["max"] == 40
    # Occurrences 1,2 | 1,3 | 1,2,4 | 5: eight blocks, reuses are the 2nd and
    # 3rd "1" and the 2nd "2" -> 3 of 8.
    assert s["num_prefix_blocks"] == 8 and s["num_unique_prefix_blocks"] == 5
    assert s["prefix_reuse_fraction"] == pytest.approx(3 / 8)
    assert s["prefix_block_size"] == 16


def test_values_are_json_plain():
    s = trace_stats(tiny())
    assert json.loads(json.dumps(s)) == s


def test_peak_rate_sliding_window():
    t = [0.0, 50.0, 55.0, 59.0, 100.0, 109.0, 200.0]
    w = Workload.from_arrays(t, [1] * 7, [1] * 7)
    # [50, 110) holds 50, 55, 59, 100, 109 -> 5 arrivals.
    assert trace_stats(w)["peak_rate_rps_60s"] == pytest.approx(5 / 60)


def test_single_request_and_no_prefix():
    s = trace_stats(Workload.from_arrays([0.0], [5], [6]))
    assert s["span_s"] == 0.0 and s["mean_rate_rps"] is None and s["interarrival_cv"] is None
    assert "prefix_reuse_fraction" not in s
    assert s["prompt_tokens"]["p99"] == 5.0


def test_sessions_and_models():
    w = Workload.from_requests(
        [Request(0, 1, 1, session_id="a", model="X"), Request(1, 1, 1, model="Y"), Request(2, 1, 1, session_id="a", model="X")]
    )
    s = trace_stats(w)
    assert s["num_sessions"] == 1 and s["requests_by_model"] == {"X": 2, "Y": 1}


def test_format_is_readable():
    text = format_trace_stats(trace_stats(tiny()))
    assert "requests" in text and "zero_output_tokens 2" in text
    assert "37.5% of 8 blocks of 16 tokens" in text
