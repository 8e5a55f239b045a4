"""The report's chart arithmetic (servesim.report.series, charts, sweep_charts), on hand-made data with hand-computed answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from servesim.report import charts, series, sweep_charts
from servesim.report.sources import RunData, SweepData

NAN = math.nan


def test_cdf_points_are_the_empirical_cdf_of_finite_values():
    x, y = series.cdf_points(np.array([3.0, 1.0, NAN, 2.0]))
    # NaN dropped: 3 values, each step 1/3.
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert y.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_cdf_points_downsample_on_the_cdf():
    x, y = series.cdf_points(np.arange(10.0), max_points=4)
    # ranks linspace(0, 9, 4) = 0, 3, 6, 9 -> values 0, 3, 6, 9 at shares 1/10, 4/10, 7/10, 10/10.
    assert x.tolist() == [0.0, 3.0, 6.0, 9.0]
    assert y.tolist() == pytest.approx([0.1, 0.4, 0.7, 1.0])


def test_rate_per_bin_divides_a_partial_last_bin_by_its_width():
    centres, rate = series.rate_per_bin(np.array([0.5, 1.5, 1.7, 2.2]), 0.0, 2.5, 1.0)
    # Bins [0,1) [1,2) [2,2.5]: counts 1, 2, 1; the last is 0.5 s wide -> 2 per second.
    assert centres.tolist() == [0.5, 1.5, 2.25]
    assert rate.tolist() == [1.0, 2.0, 2.0]


def test_bin_width_is_round():
    assert series.bin_width_s(3600.0) == 30.0  # 3600/120 = 30
    assert series.bin_width_s(100.0) == 1.0  # 0.83 -> 1
    assert series.bin_width_s(1000.0) == 10.0  # 8.3 -> 10


def test_fleet_timeseries_sums_each_replicas_last_sample():
    ts = {
        "time_s": np.array([0.0, 1.0, 2.0]),
        "replica": np.array([0, 1, 0]),
        "queue_len": np.array([1, 4, 0]),
        "running": np.array([2, 1, 3]),
        "kv_used_blocks": np.array([10, 50, 20]),
        "kv_total_blocks": np.array([100, 200, 100]),
    }
    s = series.fleet_timeseries(ts)
    # t=0: only replica 0 sampled; t=1: r0's t=0 sample + r1; t=2: r0's new sample + r1's t=1 sample.
    assert s["time_s"].tolist() == [0.0, 1.0, 2.0]
    assert s["queue_len"].tolist() == [1, 5, 4]
    assert s["running"].tolist() == [2, 3, 4]
    # KV: 10/100; (10+50)/(100+200); (20+50)/300.  Busiest: 0.1; max(0.1, 0.25); max(0.2, 0.25).
    assert s["kv_usage"].tolist() == pytest.approx([0.1, 0.2, 70 / 300])
    assert s["kv_usage_max"].tolist() == pytest.approx([0.1, 0.25, 0.25])


def test_slo_shares_follow_the_summary_rules():
    requests = {
        "status": np.array([0, 0, 0, 1]),  # three finished, one rejected
        "ttft_s": np.array([0.1, 0.5, 0.9, NAN]),
        "tpot_s": np.array([0.01, NAN, 0.06, NAN]),
        "tokens_generated": np.array([5, 1, 4, 0]),
    }
    shares = series.slo_shares(requests, {"ttft_s": 0.5, "tpot_s": 0.05, "e2e_s": None})
    # TTFT <= 0.5 (inclusive): requests 0, 1 -> 2/4.  TPOT <= 0.05: request 0, and request 1 (1 token) -> 2/4.
    # Both: requests 0 and 1 -> 2/4.  The rejected request counts as a miss.
    assert shares == {"ttft_s": 0.5, "tpot_s": 0.5, "all": 0.5}


def test_pareto_mask():
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [NAN, 0], [2, 3]], dtype=float)
    # (3, 4) is dominated by (2, 3); NaN rows never count; equal points do not dominate each other.
    assert series.pareto_mask(points).tolist() == [True, True, False, True, False, True]


def test_energy_split_uses_idle_share_and_idle_power():
    summary = {"energy_j": 1e6, "cost_usd": 2.0, "idle_cost_usd": 0.5, "cost": {"gpu_hours": 1.0}}
    config = {"cluster": {"hardware": "h100", "power": {"idle_fraction": 0.2, "row": None}}}
    split = series.energy_split_j(summary, config)
    # Idle GPU time 3600 s x 0.5/2.0 = 900 s at 0.2 x 700 W (the H100's TDP in the catalog) = 126,000 J.
    assert split == pytest.approx({"busy": 874_000.0, "idle": 126_000.0})
    inline = {**config, "catalog": {"hardware": {"h100": {"tdp_w": 1000}}}}
    assert series.energy_split_j(summary, inline)["idle"] == pytest.approx(900 * 0.2 * 1000)
    assert series.energy_split_j(summary, {"cluster": {**config["cluster"], "pools": [{}]}}) is None


def test_run_charts_skip_absent_tables():
    run = RunData(Path("x"), {"cost_usd": None, "energy_j": None}, None, None, None)
    assert charts.run_charts(run) == []


def _search(trials, columns, spec=None):
    return SweepData(Path("s"), "search", [], ["config_hash", "status"], trials, columns, spec)


def test_pareto_flags_computed_when_the_table_has_none_and_directions_read_from_the_spec():
    columns = ["trial", "config_hash", "feasible", "pruned", "cost_usd_per_hr", "slo__goodput_rps"]
    trials = [
        {"trial": 0, "feasible": True, "pruned": False, "cost_usd_per_hr": 2.0, "slo__goodput_rps": 5.0},
        {"trial": 1, "feasible": True, "pruned": False, "cost_usd_per_hr": 3.0, "slo__goodput_rps": 4.0},
        {"trial": 2, "feasible": True, "pruned": False, "cost_usd_per_hr": 4.0, "slo__goodput_rps": 9.0},
        {"trial": 3, "feasible": False, "pruned": False, "cost_usd_per_hr": 1.0, "slo__goodput_rps": 9.0},
    ]
    spec = {"objectives": [{"metric": "cost_usd_per_hr"}, {"metric": "slo__goodput_rps", "direction": "maximize"}]}
    sweep = _search(trials, columns, spec)
    # Minimise cost, maximise goodput: trial 1 is dominated by trial 0 (cheaper and more goodput);
    # trial 3 is infeasible, so off the front however good.
    assert sweep_charts.pareto_flags(sweep) == [True, False, True, False]
    assert sweep_charts.best_trial(sweep)["trial"] == 0  # cheapest feasible
    # A tie in cost goes to the next objective (more goodput), not to the lower trial number.
    trials.append({"trial": 4, "feasible": True, "pruned": False, "cost_usd_per_hr": 2.0, "slo__goodput_rps": 6.0})
    assert sweep_charts.best_trial(_search(trials, columns, spec))["trial"] == 4


def test_axis_scale_goes_log_over_two_decades():
    assert series.axis_scale([0.2, 0.3, 183.0]) == "log"  # 183 / 0.2 > 100
    assert series.axis_scale([0.2, 0.3, 19.0]) == "linear"  # 95x
    assert series.axis_scale([0.0, 5.0, 1000.0]) == "linear"  # a zero cannot go on a log axis
    assert series.axis_scale([NAN]) == "linear"


def test_no_latency_chart_when_nothing_finished():
    requests = {"status": np.array([1, 1]), "arrival_s": np.array([0.0, 1.0]), "finish_s": np.array([NAN, NAN]),
                "ttft_s": np.array([NAN, NAN]), "tpot_s": np.array([NAN, NAN]), "e2e_s": np.array([NAN, NAN])}
    run = RunData(Path("x"), {"cost_usd": None, "energy_j": None}, None, requests, None)
    assert [c.key for c in charts.run_charts(run)] == ["chart-arrivals"]


def test_single_objective_search_draws_the_best_feasible_so_far():
    columns = ["trial", "config_hash", "feasible", "pruned", "cost_usd_per_hr"]
    trials = [{"trial": 0, "feasible": True, "pruned": False, "cost_usd_per_hr": 5.0},
              {"trial": 1, "feasible": False, "pruned": False, "cost_usd_per_hr": 3.0},
              {"trial": 2, "feasible": True, "pruned": False, "cost_usd_per_hr": 4.0},
              {"trial": 3, "feasible": True, "pruned": False, "cost_usd_per_hr": 6.0},
              {"trial": 4, "feasible": False, "pruned": True, "cost_usd_per_hr": None}]
    [chart] = sweep_charts.search_charts(_search(trials, columns))
    assert chart.title == "Search: cost_usd_per_hr (USD/h) per trial"
    best = next(t for t in chart.figure.data if t.name == "best feasible so far")
    # Feasible values 5 (trial 0), 4 (trial 2), 6 (trial 3); trial 1 is infeasible, 4 pruned.
    assert list(best.x) == [0, 1, 2, 3, 4] and list(best.y) == [5.0, 5.0, 4.0, 4.0, 4.0]
    assert sweep_charts.best_trial(_search(trials, columns))["trial"] == 2


def test_fleet_timeseries_counts_a_silent_replica_idle():
    ts = {
        "time_s": np.array([0.0, 1.0, 5.0]),
        "replica": np.array([0, 1, 0]),
        "queue_len": np.array([1, 4, 0]),
        "running": np.array([2, 1, 3]),
        "kv_used_blocks": np.array([10, 50, 20]),
        "kv_total_blocks": np.array([100, 200, 100]),
    }
    s = series.fleet_timeseries(ts, hold_s=1.5)
    # At t=5 replica 1's sample (t=1) is 4 s old, past the 1.5 s hold: idle, nothing waiting or running,
    # no blocks in use, its 200 blocks still in the total.  At t=1 replica 0's t=0 sample is 1 s old: it holds.
    assert s["queue_len"].tolist() == [1, 5, 0]
    assert s["running"].tolist() == [2, 3, 3]
    assert s["kv_usage"].tolist() == pytest.approx([0.1, 60 / 300, 20 / 300])
    assert s["kv_usage_max"].tolist() == pytest.approx([0.1, 0.25, 0.2])
