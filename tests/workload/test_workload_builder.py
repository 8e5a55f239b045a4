"""build_workload: window, rate scaling, sampling, max_requests, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.core.rng import RandomStreams
from servesim.errors import TraceError
from servesim.workload import Workload, build_workload
from servesim.workload.config import parse_workload_config
from servesim.workload.transforms import sample

# Arrivals at 0, 1, ..., 9 s; prompt = 10 * (i + 1), output = i + 1.
TEN = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"2023-11-16 00:00:{i:02d}.0000000,{10 * (i + 1)},{i + 1}\n" for i in range(10)
)


@pytest.fixture
def ten(tmp_path: Path) -> str:
    path = tmp_path / "ten.csv"
    path.write_text(TEN)
    return str(path)


def trace(path: str, seed: int = 1, **opts) -> Workload:
    return build_workload(parse_workload_config({"kind": "trace", "path": path, **opts}), RandomStreams(seed))


def test_plain_trace(ten):
    w = trace(ten)
    np.testing.assert_allclose(w.arrival_s, np.arange(10.0))
    assert w.skipped == {}


def test_window_rebases_to_start(ten):
    w = trace(ten, window_start_s=2.5, window_end_s=6.0)
    np.testing.assert_allclose(w.arrival_s, [0.5, 1.5, 2.5])  # rows at 3, 4, 5 s
    assert w.prompt_tokens.tolist() == [40, 50, 60]
    assert w.skipped == {"outside_window": 7}


def test_window_end_is_exclusive_and_start_inclusive(ten):
    w = trace(ten, window_start_s=2.0, window_end_s=4.0)
    np.testing.assert_allclose(w.arrival_s, [0.0, 1.0])
    w = trace(ten, window_end_s=3.0)
    np.testing.assert_allclose(w.arrival_s, [0.0, 1.0, 2.0])


def test_rate_scale_divides_times(ten):
    np.testing.assert_allclose(trace(ten, rate_scale=2.0).arrival_s, np.arange(10.0) / 2)
    # The window is in trace time, applied before scaling.
    np.testing.assert_allclose(trace(ten, window_start_s=4, window_end_s=8, rate_scale=4.0).arrival_s, [0, 0.25, 0.5, 0.75])


def test_max_requests_keeps_earliest(ten):
    w = trace(ten, max_requests=3)
    assert w.prompt_tokens.tolist() == [10, 20, 30]
    assert w.skipped == {"over_max_requests": 7}


def test_sampling_matches_named_stream(ten):
    w = trace(ten, seed=5, sample_fraction=0.5)
    full = trace(ten)
    expected = sample(full, 0.5, RandomStreams(5).stream("workload.sample"))
    np.testing.assert_array_equal(w.arrival_s, expected.arrival_s)
    assert w.skipped == {"sampled_out": 10 - len(w)} and 0 < len(w) < 10
    again = trace(ten, seed=5, sample_fraction=0.5)
    np.testing.assert_array_equal(w.arrival_s, again.arrival_s)


def test_order_window_scale_sample_then_max(ten):
    w = trace(ten, seed=3, window_start_s=1, rate_scale=2.0, sample_fraction=0.7, max_requests=2)
    windowed = np.arange(1.0, 10.0) - 1.0
    keep = RandomStreams(3).stream("workload.sample").random(9) < 0.7
    np.testing.assert_allclose(w.arrival_s, (windowed / 2.0)[keep][:2])
    assert w.skipped == {"outside_window": 1, "sampled_out": int((~keep).sum()), "over_max_requests": int(keep.sum()) - 2}


def test_empty_window_is_a_trace_error(ten):
    with pytest.raises(TraceError, match=r"window \[20.0, None\) s holds no request"):
        trace(ten, window_start_s=20)


SYNTH = {
    "kind": "synthetic",
    "num_requests": 200,
    "arrival": {"process": "gamma", "rate_rps": 4.0, "cv": 2.0},
    "prompt_tokens": {"dist": "lognormal", "median": 500, "sigma": 1.0, "max": 2000},
    "output_tokens": {"dist": "uniform", "low": 10, "high": 20},
}


def synth(seed: int, **patch) -> Workload:
    return build_workload(parse_workload_config({**SYNTH, **patch}), RandomStreams(seed))


def test_synthetic_same_seed_same_workload():
    a, b, c = synth(1), synth(1), synth(2)
    for name in ("arrival_s", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    assert len(a) == 200 and a.arrival_s[0] == 0.0
    assert a.prompt_tokens.max() <= 2000 and set(a.output_tokens.tolist()) <= set(range(10, 21))
    assert a.priority.tolist() == [0] * 200


def test_synthetic_streams_are_independent():
    # Changing the output distribution leaves arrivals and prompts unchanged.
    a = synth(1)
    b = synth(1, output_tokens={"dist": "fixed", "value": 5})
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.prompt_tokens, b.prompt_tokens)
    assert b.output_tokens.tolist() == [5] * 200


def test_synthetic_constant_arrivals():
    w = synth(1, num_requests=4, arrival={"process": "constant", "rate_rps": 2.0})
    np.testing.assert_allclose(w.arrival_s, [0.0, 0.5, 1.0, 1.5])


def test_synthetic_empirical_lengths_come_from_trace(ten):
    w = synth(1, prompt_tokens={"dist": "empirical", "trace": ten, "column": "prompt"},
              output_tokens={"dist": "empirical", "trace": ten, "column": "output", "min": 3})
    assert set(w.prompt_tokens.tolist()) <= {10 * (i + 1) for i in range(10)}
    assert set(w.output_tokens.tolist()) <= set(range(3, 11))
