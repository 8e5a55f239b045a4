"""Heterogeneous pools and model routers: choices on hand-made states, and whole runs."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.model_routing import (
    CheapestFirstRouter,
    PoolProfile,
    QualityThresholdRouter,
    RouteBalanceRouter,
)
from servesim.cluster.routers import LeastOutstandingRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.cluster.views import ReplicaSnapshot
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.metrics.records import FINISHED, REJECTED
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.sequence import Sequence
from servesim.workload.request import Request, Workload


def pool(name, first, count, quality, price, *, prefill=0.001, decode=(0.01, 0.02), fits=10_000):
    return PoolProfile(name, first, count, tuple(quality), price, prefill, tuple(decode), fits)


# Two replicas of a small, cheap, weak model; one of a large, dear, strong one.
SMALL = pool("small", 0, 2, [(0.0, 0.9), (1.0, 0.3)], 1.0)
LARGE = pool("large", 2, 1, [(0.0, 0.95), (1.0, 0.85)], 4.0)


def views(outstanding):
    return [ReplicaSnapshot(i, o, 0.0) for i, o in enumerate(outstanding)]


def req(rid=0, prompt=100, output=10, arrival=0.0):
    return Sequence(rid, arrival, prompt, output)


def test_quality_curve_is_piecewise_linear_and_flat_beyond_its_ends():
    curve = pool("p", 0, 1, [(0.2, 0.9), (0.6, 0.5)], 1.0)
    assert curve.quality(0.0) == pytest.approx(0.9)
    assert curve.quality(0.4) == pytest.approx(0.7)
    assert curve.quality(0.5) == pytest.approx(0.6)
    assert curve.quality(1.0) == pytest.approx(0.5)


def test_predicted_latency_by_hand():
    p = SMALL  # prefill 1 ms per token; decode 10 ms at batch 1, 20 ms at batch 2 (its limit)
    # Idle: 100 x 1 ms + 10 x 10 ms.
    assert p.predicted_latency_s(100, 10, 0) == pytest.approx(0.2)
    # One ahead: joins a batch of 2.
    assert p.predicted_latency_s(100, 10, 1) == pytest.approx(0.1 + 0.2)
    # Three ahead at a limit of 2: (3 + 1 - 2) / 2 = one more round.
    assert p.predicted_latency_s(100, 10, 3) == pytest.approx(0.3 * 2)
    # Other prompts at 500 tokens/s keep it busy half the time: twice as long.
    assert p.predicted_latency_s(100, 10, 0, 500.0) == pytest.approx(0.4)


def test_route_balance_prefers_the_strong_model_when_it_is_idle_and_avoids_it_when_it_is_busy():
    difficulty = np.array([0.5, 0.5])
    router = RouteBalanceRouter([SMALL, LARGE], difficulty, quality_weight=1.0, latency_weight=0.5,
                                cost_weight=0.1, expected_output_tokens=10)
    # Scores at difficulty 0.5: small 0.6 - 0.5 x 0.2 - 0.1 x 1/4 = 0.475;
    # idle large 0.9 - 0.5 x 0.2 - 0.1 = 0.7.
    assert router.score(req(0), views([0, 0, 0])[0]) == pytest.approx(0.475)
    assert router.score(req(0), views([0, 0, 0])[2]) == pytest.approx(0.7)
    assert router.route(req(0), views([0, 0, 0])) == 2
    # A fresh router (no prompts sent yet). Large with 5 outstanding: (6 - 2) / 2 = 2 more
    # rounds, latency 0.3 x 3 = 0.9 s, score 0.9 - 0.45 - 0.1 = 0.35; the busier small
    # replica (1 outstanding): 0.6 - 0.5 x 0.3 - 0.025 = 0.425; the idle one 0.475.
    fresh = RouteBalanceRouter([SMALL, LARGE], difficulty, quality_weight=1.0, latency_weight=0.5,
                               cost_weight=0.1, expected_output_tokens=10)
    assert fresh.score(req(1), views([1, 0, 5])[2]) == pytest.approx(0.35)
    assert fresh.route(req(1), views([1, 0, 5])) == 1  # the idle small replica
    # What it sent shows as load: 100 prompt tokens at t=0, read at t=0, over a 10 s window.
    assert fresh.prompt_rate(1, 0.0) == pytest.approx(10.0)
    assert fresh.prompt_rate(1, 10.0) == pytest.approx(10.0 * np.exp(-1.0))


def test_route_balance_skips_pools_that_cannot_hold_the_request():
    tight = pool("large", 2, 1, [(0.0, 1.0)], 4.0, fits=50)
    router = RouteBalanceRouter([SMALL, tight], np.array([0.9]), quality_weight=1.0, latency_weight=0.0,
                                cost_weight=0.0, expected_output_tokens=10)
    assert router.route(req(0, prompt=100), views([3, 3, 0])) == 0


def test_quality_threshold_takes_the_cheapest_good_enough_pool_whatever_its_load():
    router = QualityThresholdRouter([SMALL, LARGE], np.array([0.1, 0.5, 1.0]), min_quality=0.8)
    # Difficulty 0.1: small reaches 0.84 -> its less loaded replica.
    assert router.route(req(0), views([4, 2, 0])) == 1
    # Difficulty 0.5: small 0.6 < 0.8, large 0.9 -> large, though it has 50 outstanding.
    assert router.route(req(1), views([0, 0, 50])) == 2
    # Difficulty 1.0: nobody reaches 0.8 -> the best, large (0.85).
    assert router.route(req(2), views([0, 0, 50])) == 2


def test_cheapest_first_spills_to_dearer_pools_when_the_cheap_one_is_full():
    router = CheapestFirstRouter([LARGE, SMALL], np.zeros(3), spill_outstanding=3)
    assert router.route(req(0), views([2, 1, 0])) == 1  # small has room (1 < 3)
    assert router.route(req(1), views([3, 4, 0])) == 2  # small full -> large
    assert router.route(req(2), views([3, 4, 5])) == 0  # all full -> the least loaded


def test_config_checks_for_model_routing():
    base = {"cluster": {"num_replicas": 2, "pools": [{"name": "a", "num_replicas": 1}, {"name": "b", "num_replicas": 1}]},
            "router": {"policy": "route_balance"}, "workload": {"kind": "trace", "path": "builtin:azure-2023-conv"}}
    with pytest.raises(ConfigError, match="workload.difficulty"):
        validate_config(base)
    with pytest.raises(ConfigError, match="needs cluster.pools"):
        validate_config({"router": {"policy": "cheapest_first"}})
    with pytest.raises(ConfigError, match="set num_replicas to 2"):
        validate_config({"cluster": {"pools": [{"name": "a"}, {"name": "b"}]}})
    with pytest.raises(ConfigError, match="names must be unique"):
        validate_config({"cluster": {"num_replicas": 2, "pools": [{"name": "a"}, {"name": "a"}]}})
    with pytest.raises(ConfigError, match="difficulties must increase"):
        validate_config({"cluster": {"pools": [{"name": "a", "quality": [[0.5, 1], [0.2, 1]]}]}})


def _two_pool_scenario(policy="route_balance", **router):
    return {
        "seed": 1,
        "workload": {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "poisson", "rate_rps": 10},
                     "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 20},
                     "difficulty": {"a": 1, "b": 1}},
        "cluster": {"num_replicas": 3, "model": "llama-3-8b", "hardware": "h100", "pools": [
            {"name": "small", "num_replicas": 2, "hardware": "a100", "quality": [[0, 0.9], [1, 0.3]]},
            {"name": "large", "num_replicas": 1, "model": "llama-3-70b", "tensor_parallel": 4,
             "quality": [[0, 0.95], [1, 0.85]], "price_usd_per_mtok": 2.0}]},
        "router": {"policy": policy, **router},
    }


def test_a_mixed_fleet_run_reports_pools_quality_and_cost_by_hand():
    result = servesim.simulate(_two_pool_scenario("quality_threshold", min_quality=0.8))
    t, s = result.requests, result.summary
    assert (t.status == FINISHED).all()
    difficulty = servesim.api.build_workload(result.config.workload, servesim.core.rng.RandomStreams(1)).difficulty
    # quality_threshold at 0.8: the small pool (0.9 - 0.6 d) takes difficulty <= 1/6, the rest go large.
    easy = difficulty <= 1 / 6
    assert ((t.replica <= 1) == easy).all()
    quality = np.where(easy, 0.9 - 0.6 * difficulty, 0.95 - 0.1 * difficulty)
    assert s["mean_quality"] == pytest.approx(quality.mean())
    # Model cost: 220 tokens per request at the large pool's 2 $/Mtok, plus the small pool's derived price.
    small_price = s["pools"]["small"]["price_usd_per_mtok"]
    assert s["model_cost_usd"] == pytest.approx(220e-6 * (2.0 * (~easy).sum() + small_price * easy.sum()))
    assert s["pools"]["large"]["requests_finished"] == int((~easy).sum())
    # The fleet: 2 A100 at 1.99 $/h + 4 H100 at 2.49 $/h, 6 GPUs.
    assert s["num_gpus"] == 6 and s["gpus_per_replica"] is None
    span_h = (t.finish_s.max() - t.arrival_s.min()) / 3600
    assert s["cost"]["usd"] == pytest.approx((2 * 1.99 + 4 * 2.49) * span_h)


def test_a_default_pool_price_is_the_gpu_hour_over_decode_throughput():
    result = servesim.simulate(_two_pool_scenario("cheapest_first"))
    deployment = servesim.deployment.pool_deployments(result.config)[0][1]
    context = 200 + 20 // 2  # mean prompt + half the mean output
    tokens_per_s = 64 / deployment.step_model.decode_time_s(64, 64 * context)
    assert result.summary["pools"]["small"]["price_usd_per_mtok"] == pytest.approx(1.99 / 3600 / tokens_per_s * 1e6)


def test_route_balance_follows_its_weights_in_a_run():
    quality_first = servesim.simulate(_two_pool_scenario(latency_weight=0.0, cost_weight=0.0)).summary
    latency_first = servesim.simulate(_two_pool_scenario(latency_weight=10.0, cost_weight=0.0)).summary
    # Quality alone: the large model wins every request (its curve is above the small one's).
    assert quality_first["pools"]["large"]["requests_finished"] == 300
    # Latency dominating: the 8B replicas decode faster, so they take most of the load.
    assert latency_first["pools"]["small"]["requests_finished"] > 150
    assert latency_first["mean_quality"] < quality_first["mean_quality"]


def test_a_pool_that_does_not_fit_names_the_pool():
    scenario = _two_pool_scenario()
    scenario["cluster"]["pools"][1]["tensor_parallel"] = 1  # 70B in bf16 on one H100
    with pytest.raises(servesim.errors.DeploymentError, match=r"cluster.pools\[1\] \(large\)"):
        servesim.simulate(scenario)


def test_requests_go_only_to_pools_that_can_hold_them():
    """A least-outstanding router over a tiny pool and a big one: what the tiny one cannot
    hold goes to the big one; what neither can is rejected as fits_no_pool."""
    sched = SchedulerConfig(max_num_batched_tokens=4096)
    tiny = ReplicaSetup(num_kv_blocks=8, block_size=16, max_model_len=10_000, scheduler=sched)  # 128 tokens
    big = ReplicaSetup(num_kv_blocks=100, block_size=16, max_model_len=500, scheduler=sched)  # 1600, but 500 long
    model = LinearStepModel()
    workload = Workload.from_requests([
        Request(0.0, 100, 10),   # peak 109: fits both -> replica 0 (least outstanding, lowest index)
        Request(0.0, 300, 10),   # peak 309: only the big pool
        Request(0.0, 120, 900),  # peak 1019: too long for big, too much KV for tiny
    ])
    sim = Simulation(workload, tiny, 2, LeastOutstandingRouter(), model,
                     pools=[(tiny, model, 1), (big, model, 1)])
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    assert list(out.requests.replica[:2]) == [0, 1]
    assert out.requests.status[2] == REJECTED and out.requests.reject_reason[2] == "fits_no_pool"
