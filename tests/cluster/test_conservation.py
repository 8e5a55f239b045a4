"""The books every run balances (``servesim.cluster.conservation``), each broken on purpose.

Runs use ``LinearStepModel(base_s=0.01, per_token_s=0.0)`` where timings matter: every step takes
0.01 s, so a request of prompt P and output N alone on a replica finishes N steps after it starts.
"""

from __future__ import annotations

import dataclasses

import pytest
from fakes import LinearStepModel

import servesim
import servesim.api
from servesim.cluster.conservation import check_conservation, check_cost
from servesim.cluster.disaggregation import PdSetup
from servesim.cluster.fleet import Fleet
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.errors import InvariantError
from servesim.kvcache.prefix_cache import PrefixCachingKVManager
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload

STEP = LinearStepModel(base_s=0.01, per_token_s=0.0)


def _failure_config(recovery: str = "restart", num_replicas: int = 2) -> dict:
    return {
        "cluster": {"engine": "pytorch", "num_replicas": num_replicas},
        "failures": {"gpu_failures_per_hour": 0.0, "scripted": [{"at_s": 1.005, "replica": 0}],
                     "detection_s": 5.0, "restart_s": 10.0, "recovery": recovery},
    }


def _drain_config() -> dict:
    return {
        "cluster": {"engine": "pytorch", "num_replicas": 2},
        "autoscaling": {"policy": "kpa", "min_replicas": 1, "max_replicas": 2, "interval_s": 1.0,
                        "kpa": {"stable_window_s": 10.0}},
    }


# ---------------------------------------------------------------- cost


def test_cost_books_compare_paid_and_provisioned_gpu_seconds():
    check_cost(7200.0, 7200.0)
    check_cost(None, 10.0)  # no span: nothing to compare
    with pytest.raises(InvariantError, match=r"^cost books: 3600 GPU-seconds paid, the replica slots were provisioned "
                                             r"for 7200$"):
        check_cost(3600.0, 7200.0)


def test_a_plain_run_that_pays_for_too_few_replicas_fails_loudly(monkeypatch):
    # Two one-GPU replicas, one request of 10 steps: 0.1 s x 2 GPUs provisioned.
    config = {"cluster": {"engine": "pytorch", "num_replicas": 2}}
    workload = Workload.from_requests([Request(0.0, 100, 10)])
    s = servesim.simulate(config, workload=workload, step_model=STEP).summary
    assert s["cost"]["gpu_hours"] == pytest.approx(2 * 0.1 / 3600)
    real = servesim.api.summarize

    def one_replica_paid(requests, timeseries, info, slo):  # a miscounted fleet
        return real(requests, timeseries, dataclasses.replace(info, num_gpus=1), slo)

    monkeypatch.setattr(servesim.api, "summarize", one_replica_paid)
    with pytest.raises(InvariantError, match="cost books: 0.1 GPU-seconds paid, the replica slots were provisioned for 0.2"):
        servesim.simulate(config, workload=workload, step_model=STEP)


def test_a_fleet_slot_turned_off_but_still_paid_fails_loudly(monkeypatch):
    workload = Workload.from_requests([Request(0.0, 100, 3000), Request(0.0, 100, 1500), Request(12.0, 100, 5)])
    # The books balance: replica 0 paid 30 s, replica 1 15 s (it drains and turns off at 15 s).
    s = servesim.simulate(_drain_config(), workload=workload, step_model=STEP).summary
    assert s["cost"]["gpu_hours"] == pytest.approx(45.0 / 3600)
    monkeypatch.setattr(Fleet, "_close_paid", lambda self, i, now: None)  # pay never stops
    with pytest.raises(InvariantError, match="^cost books: replica slot 1 is off but paid for$"):
        servesim.simulate(_drain_config(), workload=workload, step_model=STEP)


def test_a_fleet_ledger_that_disagrees_with_its_event_log_fails_loudly(monkeypatch):
    workload = Workload.from_requests([Request(0.0, 100, 3000), Request(0.0, 100, 1500), Request(12.0, 100, 5)])
    real = Fleet.gpu_seconds
    monkeypatch.setattr(Fleet, "gpu_seconds", lambda self, end_s: [g + 1.0 for g in real(self, end_s)])
    with pytest.raises(InvariantError, match="^cost books: 47 GPU-seconds paid, the replica slots were provisioned for 45$"):
        servesim.simulate(_drain_config(), workload=workload, step_model=STEP)


def test_the_event_log_rebuilds_a_replacements_pay():
    # Replace: slot 0 paid 0 .. 6.005 s (detection), its replacement (slot 2) from 6.005 s to the
    # end at 20.1 s (still in its cold start); slot 1 paid 0 .. 20.1 s.
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(20.0, 100, 10)])
    result = servesim.simulate(_failure_config("replace"), workload=workload, step_model=STEP)
    assert result.summary["cost"]["gpu_hours"] == pytest.approx((6.005 + 20.1 + (20.1 - 6.005)) / 3600)


# ---------------------------------------------------------------- prefix caches


def _prefix_pair() -> list:
    return [Request(0.0, 1200, 3, prefix_block_ids=(10, 11, 12)), Request(5.0, 1200, 3, prefix_block_ids=(10, 11, 99))]


def _pd_prefix_run():
    setup = ReplicaSetup(1000, 16, 100_000, SchedulerConfig(), prefix_block_tokens=512, kv_bytes_per_token=1000.0)
    sim = Simulation(Workload.from_requests(_prefix_pair()), setup, 2, RoundRobinRouter(), LinearStepModel(),
                     pd=PdSetup(1, 1000.0, 1e9, 0.0))
    return sim.run(), sim


def test_prefix_hits_balance_across_the_hand_off():
    out, sim = _pd_prefix_run()
    check_conservation(out.requests, sim.replicas)
    assert sim.replicas[0].scheduler.prefix_cache.hit_tokens == 1024  # booked by the prefill replica
    assert out.requests.cached_tokens.tolist() == [0, 1024]  # recorded on the request, decoded elsewhere


def test_a_hit_the_request_lost_breaks_the_prefix_cache_books():
    out, sim = _pd_prefix_run()
    out.requests.cached_tokens[1] = 0  # as the hand-off dropped it before (issue 15)
    with pytest.raises(InvariantError, match="^prefix-cache books: requests record 0 prompt tokens found in caches, "
                                             "the caches booked 1024$"):
        check_conservation(out.requests, sim.replicas)


def test_a_cache_that_forgets_its_hits_fails_loudly(monkeypatch):
    real = PrefixCachingKVManager.commit_lookup
    monkeypatch.setattr(PrefixCachingKVManager, "commit_lookup", lambda self, rid, count, hit=0: real(self, rid, count))
    config = {"cluster": {"engine": "pytorch", "num_replicas": 1, "prefix_caching": True}}
    workload = dataclasses.replace(Workload.from_requests(_prefix_pair()), prefix_block_size=512)
    with pytest.raises(InvariantError, match="prefix-cache books: requests record 1024 .* booked 0"):
        servesim.simulate(config, workload=workload, step_model=STEP)


# ---------------------------------------------------------------- failures


def test_each_failure_is_logged_with_how_it_ended():
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(20.0, 100, 500)])
    result = servesim.simulate(_failure_config(), workload=workload, step_model=STEP)
    # Failed at 1.005 s, detected at 6.005 s, restarted at 16.005 s, before the run ends (25 s).
    log = result.summary  # the books were checked inside simulate
    assert log["fleet"]["failures"] == 1
    fleet_log = _last_fleet.books.failure_outcomes
    assert fleet_log == [[1.005, 0, "scripted_failure", "recovered"]]


def test_a_failure_whose_restart_is_lost_fails_loudly(monkeypatch):
    monkeypatch.setattr(Fleet, "_on_restarted", lambda self, now, i: None)  # the restart never happens
    workload = Workload.from_requests([Request(0.0, 100, 1000), Request(20.0, 100, 500)])
    with pytest.raises(InvariantError, match=r"^failure books: the scripted_failure of replica 0 at 1.005 s ended in no "
                                             r"recovery, replacement or end of run \(its recovery was due at 16.005 s"):
        servesim.simulate(_failure_config(), workload=workload, step_model=STEP)


def test_a_failure_counted_but_not_logged_fails_loudly(monkeypatch):
    monkeypatch.setattr(Fleet, "_open_failure", lambda self, i, now, cause, due_s: None)
    workload = Workload.from_requests([Request(0.0, 100, 1000)])
    with pytest.raises(InvariantError, match="^failure books: 1 failures counted, 0 logged$"):
        servesim.simulate(_failure_config(), workload=workload, step_model=STEP)


def test_a_failure_still_recovering_at_the_end_of_the_run_ends_with_it():
    # The only request ends at 15.005 s on replica 1; replica 0's restart (16.005 s) comes after.
    workload = Workload.from_requests([Request(0.0, 100, 1000)])
    result = servesim.simulate(_failure_config(), workload=workload, step_model=STEP)
    assert result.requests.finish_s[0] == pytest.approx(15.005)
    assert _last_fleet.books.failure_outcomes == [[1.005, 0, "scripted_failure", "end of run"]]


_last_fleet = None


@pytest.fixture(autouse=True)
def _keep_fleet(monkeypatch):
    """Keep the last run's fleet for the tests that read its failure log."""
    real = Fleet.__init__

    def init(self, *args, **kwargs):
        global _last_fleet
        real(self, *args, **kwargs)
        _last_fleet = self

    monkeypatch.setattr(Fleet, "__init__", init)
