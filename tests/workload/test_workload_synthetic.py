"""Synthetic generators: exact small cases and statistical sanity on 20k draws."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.core.rng import RandomStreams
from servesim.workload import synthetic as gen


def rng(seed: int = 0) -> np.random.Generator:
    return RandomStreams(seed).stream("test")


def test_arrivals_start_at_zero_and_accumulate_gaps():
    np.testing.assert_allclose(gen.arrivals_from_gaps(np.array([1.0, 2.0, 3.0])), [0.0, 1.0, 3.0])
    assert gen.arrivals_from_gaps(np.array([5.0])).tolist() == [0.0]


def test_constant_gaps():
    np.testing.assert_allclose(gen.constant_gaps(3, 4.0), [0.25, 0.25, 0.25])


def test_poisson_mean_rate_and_cv():
    gaps = gen.poisson_gaps(rng(), 20_000, rate_rps=5.0)
    assert 1.0 / gaps.mean() == pytest.approx(5.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_mean_rate_and_cv(cv):
    gaps = gen.gamma_gaps(rng(), 20_000, rate_rps=3.0, cv=cv)
    assert 1.0 / gaps.mean() == pytest.approx(3.0, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)


def test_same_generator_state_same_draws():
    a = gen.gamma_gaps(rng(7), 100, 2.0, 1.5)
    b = gen.gamma_gaps(rng(7), 100, 2.0, 1.5)
    c = gen.gamma_gaps(rng(8), 100, 2.0, 1.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_uniform_lengths_inclusive_bounds():
    draws = gen.uniform_lengths(rng(), 5_000, 3, 5)
    assert set(draws.tolist()) == {3, 4, 5}
    assert draws.dtype == np.int64


def test_lognormal_median_and_floor():
    draws = gen.lognormal_lengths(rng(), 20_000, median=200.0, sigma=0.8)
    assert np.median(draws) == pytest.approx(200, rel=0.05)
    assert draws.min() >= 1 and draws.dtype == np.int64
    tiny = gen.lognormal_lengths(rng(), 1_000, median=0.3, sigma=0.1)
    assert tiny.min() == 1  # rounded to 0, raised to 1


def test_fixed_and_empirical_and_clip():
    assert gen.fixed_lengths(3, 7).tolist() == [7, 7, 7]
    draws = gen.empirical_lengths(rng(), 1_000, np.array([10, 20]))
    assert set(draws.tolist()) == {10, 20}
    assert gen.clip_lengths(np.array([0, 5, 50]), None, 20).tolist() == [1, 5, 20]
    assert gen.clip_lengths(np.array([1, 5, 50]), 4, None).tolist() == [4, 5, 50]
    with pytest.raises(ValueError):
        gen.empirical_lengths(rng(), 3, np.array([], dtype=np.int64))


def test_rate_schedule_changes_time_so_the_rate_follows_the_multiplier():
    from servesim.workload.synthetic import apply_rate_schedule

    # Rate x1 until 10 s, x4 until 20 s, then x0.5.  Operational time: 10 by 10 s, 10 + 40 = 50 by 20 s.
    schedule = [(0.0, 1.0), (10.0, 4.0), (20.0, 0.5)]
    times = np.array([0.0, 5.0, 10.0, 30.0, 50.0, 51.0])
    # 5 -> 5; 10 -> 10; 30 -> 10 + 20/4 = 15; 50 -> 20; 51 -> 20 + 1/0.5 = 22.
    assert apply_rate_schedule(times, schedule) == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0, 22.0])


def test_rate_schedule_in_a_scenario_quadruples_the_arrivals_in_the_step():
    from servesim.config import validate_config
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload

    base = {"kind": "synthetic", "num_requests": 4000, "arrival": {"process": "poisson", "rate_rps": 10.0},
            "prompt_tokens": {"dist": "fixed", "value": 10}, "output_tokens": {"dist": "fixed", "value": 10}}
    stepped = dict(base, arrival={"process": "poisson", "rate_rps": 10.0, "rate_schedule": [[0, 1], [100, 4]]})
    w = build_workload(validate_config({"workload": stepped}).workload, RandomStreams(0))
    t = w.arrival_s
    before = ((t >= 50) & (t < 100)).sum() / 50
    after = ((t >= 100) & (t < 150)).sum() / 50
    assert before == pytest.approx(10, rel=0.15) and after == pytest.approx(40, rel=0.1)
    with pytest.raises(Exception, match="must begin at 0 and increase"):
        validate_config({"workload": dict(base, arrival={"process": "poisson", "rate_rps": 1, "rate_schedule": [[5, 1]]})})
