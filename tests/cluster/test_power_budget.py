"""The row power budget (POLCA): the row's draw, the controller's levels with hysteresis,
capped step times, energy under changing caps, termination and bad input, by hand.

H100 numbers throughout: TDP 700 W, so idle 140 W, decode 420 W, prompt steps 665 W
(the default fractions 0.2, 0.6, 0.95).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import servesim
from servesim.cluster.power_budget import PowerBudget, RowSetup, next_level
from servesim.core.events import EventLoop
from servesim.errors import ConfigError
from servesim.perf.power import PowerModel

FREE = PowerModel.build(700.0, 0.2, 0.6, 0.95)
CAPPED = PowerModel.build(700.0, 0.2, 0.6, 0.95, cap_w=300.0, decode_sensitivity=0.3)


class _Replica:
    """What the controller reads and sets on a replica."""

    def __init__(self, phase: int) -> None:
        self.step_phase = phase
        self.on_booked = None
        self.model = "free"

    def set_step_model(self, model, now: float) -> None:
        self.model = model


def _setup(budget_w=1000.0, cap=0.9, uncap=0.7, hard=math.inf, capping=True, servers=1, other_w=0.0):
    return RowSetup(budget_w, servers, 0, 0.0, other_w, 1.0, cap, uncap, hard, capping)


def _budget(phases, gpus, setup=None):
    replicas = [_Replica(p) for p in phases]
    row = PowerBudget(setup or _setup(), EventLoop(), replicas, gpus, [[FREE, CAPPED]] * len(replicas),
                      [["free", "capped"]] * len(replicas))
    return row, replicas


def test_the_rows_draw_from_what_each_replica_runs():
    # Idle 1 GPU + decode 2 GPUs + a prompt step on 4 GPUs, two servers of 100 W besides:
    # 2 x 100 + 1 x 140 + 2 x 420 + 4 x 665 = 200 + 140 + 840 + 2660 = 3840 W.
    row, _ = _budget([0, 1, 2], [1, 2, 4], _setup(servers=2, other_w=100.0))
    assert row.draw_w() == pytest.approx(3840.0)


def test_levels_with_hysteresis_on_a_hand_made_sequence():
    setup = _setup(budget_w=1000.0, cap=0.9, uncap=0.7, hard=1.0)
    # Above 900 W caps, below 700 W uncaps, in between stays; above 1000 W the hard level,
    # which also holds until a reading below 700 W.
    readings = [800, 950, 800, 650, 1050, 850, 950, 690, 910]
    expected = [0, 1, 1, 0, 2, 2, 2, 0, 1]
    level, levels = 0, []
    for reading in readings:
        level = next_level(level, reading, setup)
        levels.append(level)
    assert levels == expected
    assert next_level(1, 950, setup) == next_level(next_level(1, 950, setup), 950, setup)  # idempotent
    monitor = _setup(capping=False)
    assert [next_level(0, r, monitor) for r in readings] == [0] * len(readings)


def test_a_cap_reaches_a_busy_replica_at_its_next_step_and_prices_its_time():
    # Replica 0 runs a prompt step [0, 1] s on 1 GPU; replica 1 idles.  The row caps at 0.5 s:
    # replica 0 keeps drawing 665 W until its step is booked, the idle one is capped at once.
    row, replicas = _budget([2, 0], [1, 1])
    row.set_level(1, 0.5)
    assert [r.model for r in replicas] == ["capped", "capped"]
    assert row.draw_w() == pytest.approx(665.0 + 140.0)
    replicas[0].on_booked(0, 0.0, 1.0, True)  # booked under level 0
    replicas[0].step_phase = 1  # then decodes [1, 3] s at the cap: 300 W
    assert row.draw_w() == pytest.approx(300.0 + 140.0)
    replicas[0].on_booked(0, 1.0, 3.0, False)
    # Energy over a 4 s span: replica 0 = 1 s x 665 + 2 s x 300 + 1 s idle x 140 = 1405 J;
    # replica 1 idles 4 s: 560 J.
    split = row.split_powers()
    assert split[0].energy_j(1, 1.0, 2.0, 1.0) == pytest.approx(1405.0)
    assert split[1].energy_j(1, 0.0, 0.0, 4.0) == pytest.approx(560.0)
    row.set_level(0, 3.5)
    s = row.summary(4.0)
    assert s["time_capped_s"] == pytest.approx(3.0) and s["cap_events"] == 1  # capped 0.5 .. 3.5 s


def _lone(row=None, fast=True, output=3, **power):
    power = dict(power)
    if row is not None:
        power["row"] = row
    return servesim.simulate({
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_rps": 1},
                     "prompt_tokens": {"dist": "fixed", "value": 2000}, "output_tokens": {"dist": "fixed", "value": output}},
        "cluster": {"engine": "pytorch", "power": power},
        "engine": {"fast_path": fast},
    })


def test_a_row_capped_from_the_first_reading_runs_and_draws_the_cube_law():
    # A budget of 100 W: the first reading (one idle H100, 140 W) is over 95 W, so the row caps
    # every GPU at 300 W before the request's first step, and every later reading stays over it.
    free = _lone()
    capped = _lone({"budget_w": 100.0, "capped_gpu_w": 300.0})
    prefill_clock = ((300 - 140) / (665 - 140)) ** (1 / 3)
    decode_clock = ((300 - 140) / (420 - 140)) ** (1 / 3)
    ttft = lambda r: r.requests.first_token_s[0] - r.requests.arrival_s[0]  # noqa: E731
    tail = lambda r: r.requests.finish_s[0] - r.requests.first_token_s[0]  # noqa: E731
    assert ttft(capped) == pytest.approx(ttft(free) / prefill_clock, rel=1e-12)
    assert tail(capped) == pytest.approx(tail(free) * (1 + 0.3 * (1 / decode_clock - 1)), rel=1e-12)
    # All of it at 300 W: energy = (TTFT + decode time) x 300 W.
    assert capped.summary["energy_j"] == pytest.approx((ttft(capped) + tail(capped)) * 300.0)
    pb = capped.summary["power_budget"]
    assert pb["cap_events"] == 1 and pb["capped_fraction"] == pytest.approx(1.0)
    assert pb["time_over_budget_s"] == pb["readings"] * 1.0  # every reading was over 100 W
    # The readings as a time series: one per second from the arrival, every one capped, the first
    # at one idle GPU's 140 W (1.4x the budget).
    series = capped.tables["power_timeseries"]
    assert len(series["time_s"]) == pb["readings"]
    k = len(series["time_s"])
    assert list(series["time_s"]) == pytest.approx(list(capped.requests.arrival_s[0] + np.arange(k)))
    assert series["row_power_w"][0] == pytest.approx(140.0) and series["share_of_budget"][0] == pytest.approx(1.4)
    assert set(series["cap_level"].tolist()) == {1}
    assert "power_timeseries" not in free.tables


def test_a_cap_in_the_middle_of_a_run_prices_energy_by_the_level_each_step_ran_at():
    # Budget 600 W: cap above 570 W, uncap below 510 W; readings every 10 ms from the arrival.
    # The 2,000-token prompt step (665 W) takes ~59 ms and starts uncapped: the reading at
    # +10 ms caps every GPU at 300 W, but the step keeps its clock.  The first decode step
    # (from ~59 ms) is the first priced at the cap; the reading at +60 ms sees it draw 300 W
    # < 510 W and uncaps, and the steps after it run free.  So the row was capped 50 ms and
    # exactly one decode step ran capped.
    capped, free = _lone({"budget_w": 600.0, "capped_gpu_w": 300.0, "interval_s": 0.01}, output=400), _lone(output=400)
    pb = capped.summary["power_budget"]
    assert pb["cap_events"] == 1 and pb["time_capped_s"] == pytest.approx(0.05)
    t, f = capped.requests, free.requests
    ttft = t.first_token_s[0] - t.arrival_s[0]
    assert ttft == pytest.approx(f.first_token_s[0] - f.arrival_s[0], rel=1e-12)  # the prompt ran uncapped
    # One decode step took k times its free time d: the run's decode time grew by d (k - 1).
    k = 1 + 0.3 * (1 / ((300 - 140) / (420 - 140)) ** (1 / 3) - 1)
    decode, decode_free = t.finish_s[0] - t.first_token_s[0], f.finish_s[0] - f.first_token_s[0]
    d_capped = k * (decode - decode_free) / (k - 1)
    assert 0.005 < d_capped < 0.02  # one decode step of an 8B model, not more
    # Energy = prompt x 665 W + capped step x 300 W + the other decode steps x 420 W.
    expected = ttft * 665.0 + d_capped * 300.0 + (decode - d_capped) * 420.0
    assert capped.summary["energy_j"] == pytest.approx(expected, rel=1e-9)


def test_monitor_reads_the_draw_and_changes_nothing():
    cfg = {
        "workload": {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "gamma", "rate_rps": 30, "cv": 3},
                     "prompt_tokens": {"dist": "lognormal", "median": 800, "sigma": 1.0, "max": 8000},
                     "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.8, "max": 1000}},
        "cluster": {"engine": "pytorch", "num_replicas": 4},
    }
    plain = servesim.simulate(cfg)
    cfg["cluster"]["power"] = {"row": {"budget_w": 1800.0, "policy": "monitor", "gpus_per_server": 4}}
    watched = servesim.simulate(cfg)
    for name, col in plain.requests.columns().items():
        np.testing.assert_array_equal(col, watched.requests.columns()[name], err_msg=name)
    assert watched.summary["energy_j"] == pytest.approx(plain.summary["energy_j"], rel=1e-12)
    pb = watched.summary["power_budget"]
    assert pb["servers"] == 1 and pb["gpus"] == 4 and pb["nameplate_w"] == 2800.0
    assert pb["cap_events"] == 0 and pb["time_capped_s"] == 0.0
    assert pb["time_over_budget_s"] > 0  # 4 GPUs at 665 W would be 2660 W > 1800 W
    assert pb["peak_share_of_budget"] == pytest.approx(pb["draw_w"]["peak"] / 1800.0)
    from servesim.report.table import summary_text

    assert "Row power 1 servers on a 1.8 kW budget" in summary_text(watched.summary, width=200)


def test_a_budget_in_servers_at_nameplate():
    # 2 servers of 8 H100s and 500 W of other parts: 2 x (8 x 700 + 500) = 12,200 W; the one GPU
    # fills one server (nameplate 6,100 W), whose other parts draw 500 W at every reading.
    pb = _lone({"budget_servers": 2, "server_other_w": 500.0, "policy": "monitor"}).summary["power_budget"]
    assert (pb["budget_w"], pb["servers"], pb["gpus"], pb["nameplate_w"]) == (12200.0, 1, 1, 6100.0)
    assert pb["oversubscription"] == pytest.approx(6100 / 12200)
    assert 500.0 + 140.0 <= pb["draw_w"]["mean"] <= 500.0 + 665.0


def _bursty(fast: bool, horizon=None):
    return {
        "seed": 3,
        "horizon_s": horizon,
        "workload": {"kind": "synthetic", "num_requests": 600, "arrival": {"process": "gamma", "rate_rps": 40, "cv": 3},
                     "prompt_tokens": {"dist": "lognormal", "median": 1000, "sigma": 1.0, "max": 8000},
                     "output_tokens": {"dist": "lognormal", "median": 150, "sigma": 0.8, "max": 1000}},
        "cluster": {"engine": "pytorch", "num_replicas": 8, "power": {"row": {"budget_servers": 0.75, "capped_gpu_w": 450.0,
                                                            "hard_threshold": 1.0, "hard_gpu_w": 350.0,
                                                            "interval_s": 0.5}}},
        "engine": {"fast_path": fast},
    }


def test_fast_path_and_reference_agree_under_cap_changes():
    fast, slow = servesim.simulate(_bursty(True)), servesim.simulate(_bursty(False))
    assert fast.summary["power_budget"]["cap_events"] >= 2  # the case really changes caps
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
    assert fast.summary["power_budget"] == slow.summary["power_budget"]
    assert fast.summary["energy_j"] == pytest.approx(slow.summary["energy_j"], rel=1e-12)


def test_same_config_same_results():
    a, b = servesim.simulate(_bursty(True)), servesim.simulate(_bursty(True))
    assert a.summary["power_budget"] == b.summary["power_budget"]
    np.testing.assert_array_equal(a.requests.finish_s, b.requests.finish_s)


def test_the_controller_stops_when_the_run_drains_and_at_the_horizon():
    r = servesim.simulate(_bursty(True))
    last_finish = float(np.nanmax(r.requests.finish_s))
    first = float(r.requests.arrival_s.min())
    # It reads every 0.5 s from the first arrival while anything else is pending, then stops:
    # the run ends at its last reading, the first at or after the last finish.
    assert last_finish <= r.summary["sim_time_s"] < last_finish + 0.5
    assert r.summary["power_budget"]["readings"] == round((r.summary["sim_time_s"] - first) / 0.5) + 1
    cut = servesim.simulate(_bursty(True, horizon=5.0))
    assert cut.summary["sim_time_s"] == 5.0
    assert cut.summary["power_budget"]["readings"] == int((5.0 - first) / 0.5) + 1


@pytest.mark.parametrize("row, match", [
    ({"budget_w": 1000.0, "budget_servers": 1.0, "capped_gpu_w": 400.0}, "exactly one of budget_w and budget_servers"),
    ({"budget_w": 1000.0, "capped_gpu_w": 400.0, "cap_threshold": 0.8, "uncap_threshold": 0.8}, "uncap_threshold=0.8 must be below"),
    ({"budget_w": 1000.0}, "policy='polca' needs capped_gpu_w"),
    ({"budget_w": 1000.0, "capped_gpu_w": 400.0, "hard_threshold": 1.0}, "give both or neither"),
    ({"budget_w": 1000.0, "capped_gpu_w": 400.0, "hard_threshold": 0.9, "hard_gpu_w": 300.0}, "hard_threshold=0.9 must be above"),
    ({"budget_w": 1000.0, "capped_gpu_w": 400.0, "hard_threshold": 1.0, "hard_gpu_w": 500.0}, "hard_gpu_w=500.0 must be below"),
    ({"budget_w": 1000.0, "capped_gpu_w": 100.0}, r"cluster.power.row.capped_gpu_w = 100.0: .*idle power"),
    ({"budget_w": -5.0, "capped_gpu_w": 400.0}, "budget_w"),
])
def test_bad_row_configs_name_the_field(row, match):
    with pytest.raises(ConfigError, match=match):
        _lone(row)
    # (one line each)
    try:
        _lone(row)
    except ConfigError as err:
        assert "\n" not in str(err)


def test_not_with_semi_pd():
    with pytest.raises(ConfigError, match="cluster.power.row: not with cluster.semi_pd"):
        servesim.simulate({"cluster": {"engine": "pytorch", "num_replicas": 1, "semi_pd": {}, "power": {"row": {"budget_w": 1e4, "capped_gpu_w": 400.0}}},
                           "workload": {"kind": "synthetic", "num_requests": 2, "arrival": {"process": "poisson", "rate_rps": 1},
                                        "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 3}}})
