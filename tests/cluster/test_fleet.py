"""Fleet operations: cold starts, scaling decisions, draining, failures and their books.

Runs use ``LinearStepModel(base_s=0.01, per_token_s=0.0)``: every step takes 0.01 s, so a
request of prompt P and output N alone on a replica finishes N steps after it starts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import servesim
from servesim.api import build_deployment
from servesim.cluster.autoscaling import Hpa, Kpa, QLearningKpa
from servesim.cluster.fleet import FleetSample, cold_start_seconds
from servesim.config import load_config, validate_config
from servesim.fleet_config import HpaConfig, KpaConfig, RlConfig
from servesim.metrics.config import SloTargets
from servesim.metrics.records import FAILED
from servesim.workload.request import Request, Workload
from tests.fakes import LinearStepModel

STEP = LinearStepModel(base_s=0.01, per_token_s=0.0)


def _sample(t: float, active: int, concurrency: int, busy_s: float = 0.0, waiting: int = 0, starting: int = 0):
    return FleetSample(t, active, starting, 0, 0, concurrency, waiting, busy_s, active)


# ---------------------------------------------------------------- cold starts


def test_cold_start_is_provisioning_plus_weights_over_bandwidth_plus_warmup():
    weights = 16.06e9  # Llama-3-8B in bf16
    # Storage: the replica's one stream of 2 GB/s: 16.06e9 / 2e9 = 8.03 s; + 30 + 10.
    assert cold_start_seconds(weights, 1, "storage", None, 450e9, 30.0, 10.0) == pytest.approx((8.03, 48.03))
    # Host memory, 4 GPUs each loading a quarter over 25 GB/s: 16.06e9 / 4 / 25e9 = 0.1606 s.
    assert cold_start_seconds(weights, 4, "host_memory", None, 450e9, 30.0, 10.0) == pytest.approx((0.1606, 40.1606))
    # A peer GPU over NVLink (450 GB/s per GPU), 2 GPUs, no provisioning: 16.06e9 / 2 / 450e9.
    load = 16.06e9 / 2 / 450e9
    assert cold_start_seconds(weights, 2, "peer_gpu", None, 450e9, 0.0, 5.0) == pytest.approx((load, 5.0 + load))
    assert cold_start_seconds(weights, 1, "storage", 4.0, 450e9, 0.0, 0.0)[0] == pytest.approx(16.06e9 / 4e9)


def _scale_to_zero_config() -> dict:
    return {
        "cluster": {"engine": "pytorch", "num_replicas": 1},
        "autoscaling": {
            "policy": "kpa", "min_replicas": 0, "max_replicas": 2, "interval_s": 1.0,
            "kpa": {"stable_window_s": 10.0, "scale_to_zero_grace_s": 5.0},
            "cold_start": {"provisioning_s": 1.0, "source": "storage", "bandwidth_gb_per_s": 4.0, "warmup_s": 1.0},
        },
    }


def test_scale_to_zero_then_a_cold_start_delays_the_next_request_exactly():
    config = validate_config(_scale_to_zero_config())
    weights = build_deployment(config).memory.weight_bytes_per_gpu  # one GPU
    cold = 1.0 + weights / 4e9 + 1.0
    workload = Workload.from_requests([Request(0.0, 100, 5), Request(200.0, 100, 5)])
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    r = result.requests
    # The first request finishes at 5 x 0.01 = 0.05 s.  Samples at t = 1..10 see no request in
    # flight; at t = 10 the stable window (10, 0] holds only zeros and the last busy sample
    # (t = 0) is 10 s old, beyond the 5 s grace: scale to zero, the idle replica turns off.
    # The second request waits in the buffer for a cold start, then runs 5 steps.
    assert r.first_token_s[1] - r.arrival_s[1] == pytest.approx(cold + 0.01)
    assert r.finish_s[1] == pytest.approx(200.0 + cold + 0.05)
    fleet = result.summary["fleet"]
    assert fleet["cold_starts"] == 1
    assert fleet["cold_start_s"] == pytest.approx(cold)
    # Paid: the first replica from 0 to 10 s, the second from 200 s to the last finish.
    paid_s = 10.0 + cold + 0.05
    assert result.summary["cost"]["gpu_hours"] == pytest.approx(paid_s / 3600)
    assert result.summary["cost"]["usd"] == pytest.approx(paid_s / 3600 * 2.49)


# ---------------------------------------------------------------- KPA


def test_kpa_stable_decision_is_mean_concurrency_over_the_target():
    kpa = Kpa(KpaConfig(target_concurrency=10, target_utilization=0.7, stable_window_s=60))
    # 30 samples every 2 s, 14 requests in flight on 2 replicas: ceil(14 / 7) = 2.
    samples = [_sample(2.0 * k, 2, 14) for k in range(30)]
    assert kpa.decide(samples, 58.0) == 2
    # 15 in flight: ceil(15 / 7) = 3 (the panic window, 21 / 7 / 2 = 1.07 < 2, stays calm).
    samples = [_sample(2.0 * k, 2, 15) for k in range(30)]
    assert kpa.decide(samples, 58.0) == 3
    assert kpa.panic_since < 0


def test_kpa_panics_on_a_burst_and_never_scales_down_in_panic():
    kpa = Kpa(KpaConfig(target_concurrency=10, target_utilization=0.7, stable_window_s=60))
    calm = [_sample(2.0 * k, 2, 14) for k in range(27)]
    burst = calm + [_sample(54.0, 2, 50), _sample(56.0, 2, 50), _sample(58.0, 2, 50)]
    # Panic window 6 s: (52, 58] holds the three 50s: 50 / 7 = 7.14 replicas, 3.6 x the 2 ready
    # (>= 2): panic, desired ceil(7.14) = 8.  (The stable mean, (27 x 14 + 150) / 30 = 17.6, asks 3.)
    assert kpa.decide(burst, 58.0) == 8
    assert kpa.panic_since == 58.0 and kpa.panics == 1
    # The burst ends; within a stable window of the trigger it holds at 8.
    after = burst + [_sample(60.0, 8, 10), _sample(62.0, 8, 10), _sample(64.0, 8, 10)]
    assert kpa.decide(after, 64.0) == 8
    # 60 s after the last trigger it leaves panic; stable mean over (58, 118] = 10: ceil(10/7) = 2,
    # but at most halving per decision from 8 ready: floor(8 / 2) = 4.
    late = after + [_sample(2.0 * k, 8, 10) for k in range(33, 60)]
    assert kpa.decide(late, 118.0) == 4
    assert kpa.panic_since < 0


def test_kpa_scales_to_zero_only_after_the_grace_period():
    kpa = Kpa(KpaConfig(stable_window_s=10, scale_to_zero_grace_s=5))
    samples = [_sample(0.0, 1, 1)] + [_sample(float(t), 1, 0) for t in range(1, 11)]
    # At t = 4 the stable window still holds the busy sample: ceil(0.2 / 22.4) = 1.
    assert kpa.decide(samples[:5], 4.0) == 1
    # At t = 10: window (0, 10] all zero, last busy sample at 0 <= 10 - 5: zero.
    assert kpa.decide(samples, 10.0) == 0
    # Had there been traffic at t = 6, the grace would hold one replica.
    busy = samples[:6] + [_sample(6.0, 1, 0)] + samples[7:]
    busy[5] = _sample(5.0, 1, 1)
    assert kpa.decide(busy, 12.0) == 1


# ---------------------------------------------------------------- HPA


def test_hpa_scales_by_the_ratio_of_observed_to_target_with_tolerance_and_stabilization():
    hpa = Hpa(HpaConfig(metric="utilization", target=0.6, tolerance=0.1, scale_down_window_s=300))
    # 4 ready replicas busy 54 of 60 replica-seconds in 15 s: 0.9 each; ceil(4 x 0.9 / 0.6) = 6.
    samples = [_sample(0.0, 4, 8, busy_s=0.0), _sample(15.0, 4, 8, busy_s=54.0)]
    assert hpa.decide(samples, 15.0) == 6
    # 0.65 / 0.6 = 1.083, within the tolerance: keep 6 (ready 6).
    samples += [_sample(30.0, 6, 8, busy_s=54.0 + 0.65 * 6 * 15)]
    assert hpa.decide(samples, 30.0) == 6
    # Load falls to 0.2: ceil(6 x 0.2 / 0.6) = 2, but the last 300 s recommended 6: stay.
    samples += [_sample(45.0, 6, 2, busy_s=samples[-1].busy_s + 0.2 * 6 * 15)]
    assert hpa.decide(samples, 45.0) == 6
    # 300 s after those, the window holds only low recommendations.
    later = samples + [_sample(360.0, 6, 2, busy_s=samples[-1].busy_s + 0.2 * 6 * 315)]
    assert hpa.decide(later, 360.0) == 2


def test_hpa_on_concurrency_and_queue():
    assert Hpa(HpaConfig(metric="concurrency", target=8)).decide([_sample(0.0, 2, 40)], 0.0) == 5  # ceil(2 x 20 / 8)
    assert Hpa(HpaConfig(metric="queue", target=2)).decide([_sample(0.0, 2, 40, waiting=12)], 0.0) == 6  # ceil(2 x 6/2)


# ---------------------------------------------------------------- RL


def test_q_learning_update_and_reward_by_hand():
    rl = RlConfig(targets=[4.0, 8.0, 16.0], initial_target=8.0, learning_rate=0.5, discount=0.8,
                  slo_weight=1.0, cost_weight=0.1, load_levels=[0.5, 1.0], decision_interval_s=10.0)
    agent = QLearningKpa(KpaConfig(), rl, SloTargets(ttft_s=1.0), np.random.default_rng(0))
    # State: 12 in flight on 1 replica at target 8: load 1.5, above both levels: bucket 2; target index 1.
    assert agent.state([_sample(0.0, 1, 12)]) == (2, 1)
    # An interval of 10 s with 4 finished requests, 1 missing the SLO, 3 replicas provisioned:
    # reward = -1 x 1/4 - 0.1 x 3 = -0.55.
    agent._finished, agent._missed, agent._replica_s = 4, 1, 30.0
    assert agent.reward(10.0) == pytest.approx(-0.55)
    agent.q[0, 1] = [-0.3, -0.2, -0.1]  # the next state's tried actions: best -0.1
    agent.visits[0, 1] = [1, 1, 1]
    agent._learn((0.0, (2, 1), 2), (0, 1), 10.0)
    # First visit: Q = r + gamma max Q' = -0.55 + 0.8 x -0.1 = -0.63.
    assert agent.q[2, 1, 2] == pytest.approx(-0.63)
    # A second interval: 4 finished, none missed, 1.5 replicas: r = -0.15, target -0.15 - 0.08 = -0.23;
    # Q <- Q + alpha (target - Q) = -0.63 + 0.5 x 0.4 = -0.43.
    agent._finished, agent._missed, agent._replica_s = 4, 0, 15.0
    agent._learn((0.0, (2, 1), 2), (0, 1), 10.0)
    assert agent.q[2, 1, 2] == pytest.approx(-0.43)
    # Choices: untried actions count as 0 (so they get tried), ties go to "keep"; greedy takes
    # the best tried action.
    assert agent._choose((1, 1)) == 1
    agent.q[1, 1] = [-0.5, -1.0, -2.0]
    agent.visits[1, 1] = [1, 1, 1]
    assert agent._choose((1, 1)) == 0
    agent.visits[1, 1] = [0, 1, 1]
    assert agent._choose((1, 1)) == 0 and agent._choose((1, 1), greedy=True) == 1


def test_episodic_q_learning_moves_once_per_run_and_walks_greedily_to_its_target():
    rl = RlConfig(targets=[4.0, 8.0, 16.0], initial_target=8.0, learning_rate=0.5, discount=0.0,
                  slo_weight=1.0, cost_weight=0.1)
    agent = QLearningKpa(KpaConfig(), rl, SloTargets(ttft_s=1.0), np.random.default_rng(0))
    agent.new_episode(0.0)  # nothing learnt yet: the untried actions tie and "keep" wins
    assert agent.targets[agent.index] == 8.0 and agent.kpa.target == 8.0
    # The episode: 10 finished, 2 missed, 3 replicas over 100 s: reward -0.2 - 0.1 x 3 = -0.5.
    agent._finished, agent._missed, agent._replica_s = 10, 2, 300.0
    agent._first_sample_s, agent._last_sample_s = 0.0, 100.0
    agent.new_episode(0.0)
    # Q((0, 8), keep) = -0.5 (first visit, no discount).  Down and up, untried, tie at 0 and the
    # tie goes to the middle of [down, up], i.e. up: the next episode runs at 16.
    assert agent.q[0, 1, 1] == pytest.approx(-0.5) and agent.episode_rewards == [pytest.approx(-0.5)]
    assert agent.targets[agent.index] == 16.0
    # At 16: no miss, 2 replicas: reward -0.2, credited to (8, up).
    agent._finished, agent._missed, agent._replica_s = 10, 0, 200.0
    agent._first_sample_s, agent._last_sample_s = 0.0, 100.0
    agent.new_episode(0.0, final=True)
    assert agent.q[0, 1, 2] == pytest.approx(-0.2)
    # The reported run: from 8 the best tried move is up (-0.2 > -0.5); from 16 nothing was tried: keep.
    assert agent.targets[agent.index] == 16.0


@pytest.mark.parametrize("interval", [5.0, None])
def test_rl_autoscaler_trains_over_episodes_and_reports_its_targets(interval):
    config = {
        "seed": 3,
        "workload": {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "gamma", "rate_rps": 6.0, "cv": 3.0},
                     "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 50}},
        "slo": {"ttft_s": 0.5},
        "autoscaling": {"policy": "rl", "max_replicas": 4, "interval_s": 1.0,
                        "cold_start": {"provisioning_s": 2.0, "warmup_s": 1.0},
                        "rl": {"episodes": 3, "decision_interval_s": interval, "targets": [1.0, 4.0, 16.0], "initial_target": 16.0}},
    }
    result = servesim.simulate(config)
    rl = result.summary["fleet"]["rl"]
    assert rl["decisions"] > 0 and rl["final_target"] in (1.0, 4.0, 16.0)
    assert result.summary["num_finished"] == 300
    again = servesim.simulate(config)
    assert again.summary["fleet"] == result.summary["fleet"]  # deterministic, training included


# ---------------------------------------------------------------- draining


def _drain_config() -> dict:
    return {
        "cluster": {"engine": "pytorch", "num_replicas": 2},
        "autoscaling": {"policy": "kpa", "min_replicas": 1, "max_replicas": 2, "interval_s": 1.0,
                        "kpa": {"stable_window_s": 10.0}},
    }


def test_scale_down_drains_the_newest_least_loaded_replica_which_turns_off_when_empty():
    workload = Workload.from_requests([Request(0.0, 100, 3000), Request(0.0, 100, 1500), Request(12.0, 100, 5)])
    result = servesim.simulate(_drain_config(), workload=workload, step_model=STEP)
    r = result.requests
    # Two in flight, one each: at t = 10 KPA wants ceil(2 / 22.4) = 1; both hold one request, so
    # the newest (replica 1) drains.  The request arriving at 12 s goes to replica 0.
    assert list(r.replica) == [0, 1, 0]
    assert r.finish_s[1] == pytest.approx(15.0)  # 1,500 steps of 0.01 s: replica 1 turns off here
    assert r.finish_s[0] == pytest.approx(30.0)
    s = result.summary
    assert s["fleet"]["scale_downs"] >= 1 and s["fleet"]["cold_starts"] == 0
    # Paid: replica 0 for 30 s, replica 1 for 15 s.
    assert s["cost"]["gpu_hours"] == pytest.approx(45.0 / 3600)
    assert s["fleet"]["replicas"]["mean_provisioned"] == pytest.approx(1.5)


# ---------------------------------------------------------------- failures


def _failure_config(in_flight: str = "retry", recovery: str = "restart") -> dict:
    return {
        "cluster": {"engine": "pytorch", "num_replicas": 2},
        "failures": {"gpu_failures_per_hour": 0.0, "scripted": [{"at_s": 1.005, "replica": 0}],
                     "detection_s": 5.0, "restart_s": 10.0, "recovery": recovery, "in_flight": in_flight},
    }


def test_a_failed_replicas_request_is_retried_after_detection_recomputing_its_tokens():
    workload = Workload.from_requests([Request(0.0, 100, 1000)])
    result = servesim.simulate(_failure_config(), workload=workload, step_model=STEP)
    r, s = result.requests, result.summary
    # By the failure at 1.005 s, 100 steps have ended: 100 tokens.  Detected at 6.005 s, the request
    # goes to replica 1, recomputes its 200 tokens in one 0.01 s step (sampling token 101), then
    # decodes 899 more: 6.005 + 0.01 + 8.99 = 15.005 s.
    assert r.replica[0] == 1
    assert r.finish_s[0] == pytest.approx(15.005)
    assert r.first_token_s[0] == pytest.approx(0.01)  # the first token was already sent
    assert r.tokens_generated[0] == 1000
    fleet = s["fleet"]
    assert fleet["failures"] == 1 and fleet["retried_requests"] == 1 and fleet["retries"] == 1
    assert fleet["lost_tokens"] == 100
    # No SLO set: the retried request meets it, so the failure cost no goodput.
    assert fleet["slo_lost_requests"] == 0
    # Replica 0 served 1.005 s, then was down to the end (15.005 s; back only at 16.005 s);
    # replica 1 served all 15.005 s.
    assert s["availability"] == pytest.approx((1.005 + 15.005) / (1.005 + 15.005 + 14.0))


def test_with_the_fail_policy_a_lost_request_fails_with_a_reason_not_silently():
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(0.0, 100, 10)])
    result = servesim.simulate(_failure_config("fail"), workload=workload, step_model=STEP)
    r, s = result.requests, result.summary
    assert r.status[0] == FAILED and r.reject_reason[0] == "replica_failed"
    assert r.tokens_generated[0] == 100
    assert s["num_failed"] == 1 and s["failed_by_reason"] == {"replica_failed": 1}
    assert s["num_finished"] == 1 and s["fleet"]["failed_requests"] == 1
    # Goodput lost: the failed request, over the span (first arrival to the short request's finish).
    assert s["fleet"]["slo_lost_requests"] == 1
    assert s["fleet"]["goodput_lost_rps"] == pytest.approx(1 / s["span_s"])


def test_requests_routed_to_a_failed_replica_before_detection_are_retried_too():
    # A request at 2 s: replica 0 failed at 1.005 s but looks idle (0 in flight) to the router.
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(0.5, 100, 10), Request(2.0, 100, 10)])
    result = servesim.simulate(_failure_config(), workload=workload, step_model=STEP)
    r = result.requests
    assert r.replica[2] == 1  # moved at detection
    assert r.first_token_s[2] == pytest.approx(6.005 + 0.01)
    assert result.summary["fleet"]["retried_requests"] == 2  # the long one and the late one
    # With a 1 s TTFT target the late request (first token 4.015 s after it arrived) misses it;
    # the long one had its first token before the failure and keeps TPOT within 0.1 s.
    slow = servesim.simulate(dict(_failure_config(), slo={"ttft_s": 1.0, "tpot_s": 0.1}), workload=workload, step_model=STEP)
    assert slow.summary["fleet"]["slo_lost_requests"] == 1


def test_retries_are_bounded():
    config = _failure_config()
    config["failures"].update(max_retries=0)
    workload = Workload.from_requests([Request(0.0, 100, 1000)])
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    assert result.requests.reject_reason[0] == "retries_exhausted"


def test_replacement_starts_a_new_replica_with_a_cold_start():
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(20.0, 100, 10)])
    config = validate_config(_failure_config(recovery="replace"))
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    fleet = result.summary["fleet"]
    assert fleet["cold_starts"] == 1
    # Detected at 6.005 s, the replacement (default cold start 48.03 s for Llama-3-8B from storage)
    # is down time too; it is not ready before the end (the request at 20 s ends after 10 steps,
    # 20.1 s), so slot 0 is down from 1.005 s on while replica 1 serves throughout.
    assert result.summary["availability"] == pytest.approx((1.005 + 20.1) / (1.005 + 20.1 + 19.095))


def test_a_one_replica_fleet_restarting_in_place_starts_no_second_replica():
    # Issue 15 finding 1: the only replica fails; after detection the activator buffered the
    # retried request and started a second replica although the first was restarting in place,
    # so the fleet ended with two replicas paid for (mean 1.96 replicas, twice the GPU-hours).
    config = _failure_config()
    config["cluster"]["num_replicas"] = 1
    workload = Workload.from_requests([Request(0.0, 100, 1000)])
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    r, s = result.requests, result.summary
    # 100 tokens by the failure at 1.005 s; detected at 6.005 s, the request waits for the restart
    # (6.005 + 10 = 16.005 s), recomputes its 200 tokens in one step (token 101 at 16.015 s) and
    # decodes 899 more: 16.015 + 8.99 = 25.005 s.
    assert r.replica[0] == 0 and r.finish_s[0] == pytest.approx(25.005)
    fleet = s["fleet"]
    assert fleet["cold_starts"] == 0 and fleet["scale_ups"] == 0
    # One slot paid from 0 to 25.005 s (down time included): one GPU.
    assert s["cost"]["gpu_hours"] == pytest.approx(25.005 / 3600)
    assert fleet["replicas"]["mean_provisioned"] == pytest.approx(1.0)
    assert s["availability"] == pytest.approx((1.005 + 9.0) / 25.005)


def test_failure_rate_defaults_to_the_published_rate_and_draws_exponential_times():
    from servesim.cluster.failures import FailureProcess
    from servesim.fleet_config import FailuresConfig

    cfg = FailuresConfig(rate_scale=1000.0)
    assert cfg.gpu_failures_per_hour == pytest.approx(419 / (54 * 24 * 16384))
    process = FailureProcess(cfg, 8, np.random.default_rng(1))
    # A replica of 8 GPUs fails at 8 x 1.97e-5 x 1000 per hour.
    assert process.replica_rate_s * 3600 == pytest.approx(8 * 1000 * 419 / (54 * 24 * 16384))
    draws = np.array([process._draw(process.replica_rate_s, 0.0) for _ in range(4000)])
    assert draws.mean() == pytest.approx(1 / process.replica_rate_s, rel=0.05)
    # Nodes of 8 GPUs: a 4-GPU replica 3 sits on node 1; an 8-GPU replica 2 on node 2.
    assert list(FailureProcess(cfg, 4, np.random.default_rng(0)).nodes_of(3)) == [1]
    assert list(process.nodes_of(2)) == [2]


def test_stragglers_slow_their_replicas_steps_by_the_factor():
    workload = Workload.from_requests([Request(0.0, 100, 11)])
    config = {"cluster": {"engine": "pytorch"},
              "failures": {"gpu_failures_per_hour": 0.0, "stragglers": {"fraction": 1.0, "slowdown": 2.0}}}
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    # 11 steps of 0.02 s.
    assert result.requests.finish_s[0] == pytest.approx(0.22)
    assert result.summary["fleet"]["stragglers"] == 1


def test_fleet_runs_are_deterministic_and_keep_their_books():
    base = {
        "seed": 5,
        "workload": {"kind": "synthetic", "num_requests": 800, "arrival": {"process": "gamma", "rate_rps": 10.0, "cv": 2.0},
                     "prompt_tokens": {"dist": "lognormal", "median": 600, "sigma": 0.8, "max": 4000},
                     "output_tokens": {"dist": "lognormal", "median": 120, "sigma": 0.8, "max": 1000}},
        "cluster": {"engine": "pytorch", "num_replicas": 3},
        "autoscaling": {"policy": "hpa", "max_replicas": 6, "interval_s": 5.0,
                        "cold_start": {"provisioning_s": 5.0, "warmup_s": 2.0}, "hpa": {"target": 0.5}},
        "failures": {"rate_scale": 3e5, "interference": {"period_s": 10.0, "sigma": 0.3}},
    }
    a = servesim.simulate(base)
    b = servesim.simulate(base)
    s = a.summary
    assert s["fleet"]["failures"] > 0
    assert s["num_finished"] + s["num_failed"] + s["num_rejected"] + s["num_in_flight"] == 800
    assert a.summary["fleet"] == b.summary["fleet"]
    assert np.array_equal(a.requests.finish_s, b.requests.finish_s, equal_nan=True)
    series = a.tables["fleet_timeseries"]
    assert len(series["time_s"]) > 0 and series["active"].min() >= 1 and series["active"].max() <= 6


@pytest.mark.parametrize("section, message", [
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas = 3 is above max_replicas = 2"),
    ({"autoscaling": {"min_replicas": 2}}, "cluster.num_replicas = 1 is the starting fleet"),
    ({"autoscaling": {"max_replicas": 2}, "cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {}}}, "needs a colocated cluster of one pool; cluster.disaggregation"),
    ({"autoscaling": {"rl": {"initial_target": 5}}}, "rl.initial_target = 5.0 must be one of rl.targets"),
    ({"failures": {"detection_s": -1}}, "failures.detection_s = -1"),
])
def test_bad_fleet_configs_get_one_line(section, message):
    with pytest.raises(servesim.ConfigError, match=re_escape(message)):
        validate_config(section)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_energy_counts_each_replica_for_its_own_provisioned_time():
    workload = Workload.from_requests([Request(0.0, 100, 3000), Request(0.0, 100, 1500)])
    s = servesim.simulate(_drain_config(), workload=workload, step_model=STEP).summary
    # H100 700 W: prefill 0.95, decode 0.6 of TDP.  Replica 0: one 0.01 s prompt step, 29.99 s of
    # decode; replica 1: 0.01 s prompt, 14.99 s decode, then off (no idle time paid).
    expected = 0.01 * 665 + 29.99 * 420 + 0.01 * 665 + 14.99 * 420
    assert s["energy_j"] == pytest.approx(expected)
    assert math.isclose(s["idle_cost_usd"], 0.0, abs_tol=1e-12)


# ---------------------------------------------------------------- elastic (ElasticMoE-style) scaling


def test_block_pool_grows_and_shrinks_by_free_blocks():
    from servesim.kvcache.block_pool import BlockPool

    pool = BlockPool(4)
    taken = pool.allocate(3)
    pool.grow(2)  # blocks 4 and 5, reused after the ones already in circulation
    assert pool.num_blocks == 6 and pool.num_free == 3
    assert pool.take_one() == 3
    assert not pool.shrink(3)  # only 2 free
    assert pool.shrink(2) and pool.num_blocks == 4 and pool.num_free == 0
    pool.release(taken)
    assert pool.num_used == 1


def test_elastic_grow_adds_gpus_to_the_running_instance_after_a_peer_copy():
    config = validate_config({
        "cluster": {"engine": "pytorch", "num_replicas": 1, "tensor_parallel": 1},
        "autoscaling": {"policy": "kpa", "max_replicas": 1, "interval_s": 1.0, "kpa": {"target_concurrency": 2},
                        "elastic": {"gpu_steps": [1, 2], "peer_gb_per_s": 1.0, "switch_s": 1.0}},
    })
    requests = [Request(0.0, 100, 2000)] + [Request(0.5, 100, 2000) for _ in range(9)]
    result = servesim.simulate(config, workload=Workload.from_requests(requests))
    s = result.summary
    weights = build_deployment(config).memory.weight_bytes_per_gpu  # the whole model on one GPU
    # At t = 0 one request in flight asks for ceil(1 / 1.4) = 1 unit: no change.  At t = 1 the
    # samples (1 then 10 in flight) ask for ceil(5.5 / 1.4) = 4 units, 4x the ready one (panic):
    # grow the instance from 1 to 2 GPUs.  The new GPU copies its half of the
    # weights at 1 GB/s, then the switch pauses 1 s: 16.06e9 / 2 / 1e9 + 1 = 9.03 s.
    assert s["fleet"]["elastic"]["grows"] == 1 and s["fleet"]["elastic"]["shrinks"] == 0
    assert s["fleet"]["elastic"]["mean_grow_s"] == pytest.approx(weights / 2 / 1e9 + 1.0)
    # Two GPUs are paid from the decision at t = 1 on: 1 GPU-second before, 2 per second after.
    end = s["span_s"]
    assert s["cost"]["gpu_hours"] == pytest.approx((1.0 + 2.0 * (end - 1.0)) / 3600)
    assert s["fleet"]["replicas"]["mean_gpus_provisioned"] == pytest.approx((1.0 + 2.0 * (end - 1.0)) / end)
    assert s["fleet"]["scale_ups"] == 1
    tp2 = build_deployment(config.model_copy(update={"cluster": config.cluster.model_copy(update={"tensor_parallel": 2})}))
    # (the replica's KV pool now has the 2-GPU deployment's blocks; checked through the fleet's books)
    assert s["num_finished"] == 10 and tp2.memory.num_kv_blocks > build_deployment(config).memory.num_kv_blocks


# ---------------------------------------------------------------- disturbances and node failures


def test_interference_slows_each_replica_by_its_drawn_factor():
    from servesim.core.rng import RandomStreams

    config = {"seed": 4, "cluster": {"engine": "pytorch"},
              "failures": {"gpu_failures_per_hour": 0.0, "interference": {"period_s": 1000.0, "sigma": 0.5}}}
    workload = Workload.from_requests([Request(0.0, 100, 11)])
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    # One replica, no stragglers (no permutation drawn): its factor is the first draw of the
    # "disturbances" stream, floored at 1; 11 steps of 0.01 s each take that much longer.
    factor = max(1.0, math.exp(RandomStreams(4).stream("disturbances").normal(0.0, 0.5)))
    assert result.requests.finish_s[0] == pytest.approx(0.11 * factor)


def test_link_degradation_slows_kv_transfers_by_its_factor():
    def e2e(degraded: bool) -> float:
        config = {"cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {"link": {"bandwidth_gbps": 1.0}}}}
        if degraded:  # an episode starts within about a millisecond and lasts the whole run
            config["failures"] = {"gpu_failures_per_hour": 0.0,
                                  "link_degradation": {"episodes_per_hour": 3.6e6, "duration_s": 1000, "bandwidth_factor": 0.1}}
        workload = Workload.from_requests([Request(0.5, 1000, 3)])
        return float(servesim.simulate(config, workload=workload, step_model=STEP).requests.finish_s[0])

    config = validate_config({"cluster": {"engine": "pytorch", "num_replicas": 2, "disaggregation": {}}})
    memory = build_deployment(config).memory
    transfer = 1000 * memory.kv_bytes_per_token_per_gpu * memory.num_gpus / (1e9 / 8)  # 1,000 tokens over 1 Gbit/s
    # At a tenth of the bandwidth the transfer takes 10x: 9 transfer-times later.
    assert e2e(True) - e2e(False) == pytest.approx(9 * transfer, rel=1e-6)


def test_a_node_failure_takes_down_every_replica_on_the_node_at_once():
    from servesim.core.rng import RandomStreams

    config = {"seed": 2, "cluster": {"engine": "pytorch", "num_replicas": 2},
              "failures": {"gpu_failures_per_hour": 0.0, "node_failures_per_hour": 3600.0, "gpus_per_node": 2,
                           "max_retries": 0, "detection_s": 1.0}}
    workload = Workload.from_requests([Request(0.0, 100, 5000)])
    result = servesim.simulate(config, workload=workload, step_model=STEP)
    # Both one-GPU replicas sit on node 0; its first failure comes after an exponential draw of mean 1 s.
    t1 = RandomStreams(2).stream("failures").exponential(1.0)
    fleet = result.summary["fleet"]
    assert fleet["node_failures"] == 1 and fleet["failures"] == 2  # one event, both replicas
    assert result.requests.reject_reason[0] == "retries_exhausted"
    assert result.requests.tokens_generated[0] == int(t1 / 0.01)  # tokens made before the node failed


def test_failures_and_autoscaling_keep_the_books_with_prefix_caching():
    base = {
        "seed": 9,
        "workload": {"kind": "synthetic", "num_requests": 400, "arrival": {"process": "poisson", "rate_rps": 8.0},
                     "prompt_tokens": {"dist": "lognormal", "median": 400, "sigma": 0.5, "max": 2000},
                     "output_tokens": {"dist": "lognormal", "median": 80, "sigma": 0.5, "max": 400},
                     "system_prompts": {"count": 4, "tokens": 512}},
        "cluster": {"engine": "pytorch", "num_replicas": 2, "prefix_caching": True},
        "autoscaling": {"policy": "kpa", "max_replicas": 4, "interval_s": 1.0, "kpa": {"target_concurrency": 4},
                        "cold_start": {"provisioning_s": 1.0, "warmup_s": 1.0}},
        "failures": {"gpu_failures_per_hour": 0.0, "detection_s": 1.0, "restart_s": 2.0,
                     "scripted": [{"at_s": 5.0, "replica": 0}, {"at_s": 12.0, "replica": 1}, {"at_s": 20.0, "replica": 0}]},
    }
    s = servesim.simulate(base).summary  # check_conservation ran inside: tokens, requests and KV blocks balance
    assert s["fleet"]["failures"] >= 2 and s["num_finished"] + s["num_failed"] == 400
    assert s["prefix_cached_tokens"] > 0


@pytest.mark.parametrize("policy", [
    {"policy": "kpa", "min_replicas": 0, "kpa": {"target_concurrency": 8, "stable_window_s": 10, "scale_to_zero_grace_s": 5}},
    {"policy": "hpa", "interval_s": 5.0, "hpa": {"metric": "utilization", "target": 0.9, "scale_down_window_s": 30}},
])
def test_autoscaling_runs_on_the_fast_path_exactly_as_step_by_step(policy):
    # Autoscaling alone keeps the compiled fast path (decode stretches): replicas start, drain and
    # stop between steps, never under one.  Every request and the fleet's books must be identical.
    config = {
        "seed": 4,
        "workload": {"kind": "synthetic", "num_requests": 1500,
                     "arrival": {"process": "gamma", "rate_rps": 6.0, "cv": 3.0,
                                 "rate_schedule": [[0, 1], [30, 4], [60, 0.2], [150, 3]]},
                     "prompt_tokens": {"dist": "lognormal", "median": 500, "sigma": 0.8, "max": 4000},
                     "output_tokens": {"dist": "lognormal", "median": 120, "sigma": 0.8, "max": 1000}},
        "cluster": {"engine": "pytorch", "num_replicas": 1},
        "autoscaling": {"max_replicas": 6, "cold_start": {"provisioning_s": 5.0, "warmup_s": 2.0}, **policy},
    }
    fast = servesim.simulate(dict(config, engine={"fast_path": True}))
    slow = servesim.simulate(dict(config, engine={"fast_path": False}))
    assert fast.summary["num_steps"] == slow.summary["num_steps"]
    for column in ("finish_s", "first_token_s", "replica", "tokens_generated", "max_itl_s"):
        assert np.array_equal(getattr(fast.requests, column), getattr(slow.requests, column), equal_nan=True), column
    assert fast.summary["fleet"] == slow.summary["fleet"] and fast.summary["cost"] == slow.summary["cost"]
    assert fast.summary["fleet"]["cold_starts"] > 0 and fast.summary["fleet"]["scale_downs"] > 0


def test_prefix_hits_of_a_replaced_replica_stay_in_the_summary():
    # Two replicas cache a shared system prompt; replica 0 fails at 20 s and is replaced.  The
    # summary's block hits must cover every request's cached tokens, the failed replica's included.
    config = {
        "seed": 3,
        "workload": {"kind": "synthetic", "num_requests": 120, "arrival": {"process": "poisson", "rate_rps": 3.0},
                     "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 8},
                     "system_prompts": {"count": 1, "tokens": 1024}, "prefix_block_tokens": 16},
        "cluster": {"engine": "pytorch", "num_replicas": 2, "prefix_caching": True},
        "failures": {"gpu_failures_per_hour": 0.0, "recovery": "replace", "scripted": [{"at_s": 20.0, "replica": 0}]},
    }
    result = servesim.simulate(config)
    s = result.summary
    cached = int(result.requests.cached_tokens.sum())
    assert cached > 0
    assert s["kv_cache"]["tiers"]["gpu"]["hit_blocks"] * 16 >= cached
