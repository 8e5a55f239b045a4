"""GPU power by phase, power capping, and a run's energy and capacity cost, by hand."""

from __future__ import annotations

import pytest

import servesim
from servesim.errors import ConfigError
from servesim.perf.power import PowerModel


def test_phase_power_and_a_cap_by_hand():
    free = PowerModel.build(700.0, 0.2, 0.6, 0.95)
    assert (free.idle_w, free.decode_w, free.prefill_w) == pytest.approx((140.0, 420.0, 665.0))
    capped = PowerModel.build(700.0, 0.2, 0.6, 0.95, cap_w=500.0, decode_sensitivity=0.3)
    clock = ((500 - 140) / (665 - 140)) ** (1 / 3)
    assert capped.prefill_w == 500.0 and capped.prefill_time_factor == pytest.approx(1 / clock)
    assert capped.decode_w == 420.0 and capped.decode_time_factor == 1.0  # decode stays under the cap
    low = PowerModel.build(700.0, 0.2, 0.6, 0.95, cap_w=300.0, decode_sensitivity=0.3)
    decode_clock = ((300 - 140) / (420 - 140)) ** (1 / 3)
    assert low.decode_time_factor == pytest.approx(1 + 0.3 * (1 / decode_clock - 1))
    with pytest.raises(ValueError, match="at or below the GPU's idle power"):
        PowerModel.build(700.0, 0.2, 0.6, 0.95, cap_w=100.0)
    assert free.energy_j(2, 1.0, 2.0, 3.0) == pytest.approx(2 * (665 + 2 * 420 + 3 * 140))


def _lone(**cluster):
    return servesim.simulate({
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_rps": 1},
                     "prompt_tokens": {"dist": "fixed", "value": 2000}, "output_tokens": {"dist": "fixed", "value": 3}},
        # The plain harness: no front-end latency between the GPU's steps and what the client sees.
        "cluster": {"engine": "pytorch", **cluster},
    })


def test_a_lone_requests_energy_by_hand():
    result = _lone()
    t, s = result.requests, result.summary
    prefill = t.first_token_s[0] - t.arrival_s[0]  # one 2,000-token step
    decode = t.finish_s[0] - t.first_token_s[0]  # two decode steps
    assert s["energy_j"] == pytest.approx(prefill * 0.95 * 700 + decode * 0.6 * 700)
    assert s["energy_per_token_j"] == pytest.approx(s["energy_j"] / 3)
    assert s["cost_usd"] == s["cost"]["usd"] and s["idle_cost_usd"] == 0.0
    assert s["cost_per_million_tokens_usd"] == pytest.approx(s["cost_usd"] / (2003 / 1e6))


def test_a_power_cap_slows_prefill_by_the_clock_it_leaves():
    free, capped = _lone(), _lone(power={"cap_w": 500.0})
    clock = ((500 - 140) / (665 - 140)) ** (1 / 3)
    ttft = lambda r: r.requests.first_token_s[0] - r.requests.arrival_s[0]  # noqa: E731
    assert ttft(capped) == pytest.approx(ttft(free) / clock, rel=1e-12)
    # Decode (420 W) is under the cap: its steps keep their time.
    tail = lambda r: r.requests.finish_s[0] - r.requests.first_token_s[0]  # noqa: E731
    assert tail(capped) == pytest.approx(tail(free), rel=1e-12)
    with pytest.raises(ConfigError, match="cluster.power.cap_w = 100.0"):
        _lone(power={"cap_w": 100.0})
