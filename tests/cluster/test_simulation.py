"""End-to-end behaviour of a small cluster with a fake step-time model."""

import math

import numpy as np
import pytest
from fakes import LinearStepModel

from servesim.cluster.conservation import check_conservation
from servesim.cluster.routers import LeastOutstandingRouter, RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.errors import InvariantError
from servesim.metrics.records import FINISHED, IN_FLIGHT, REJECTED
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload


def run(requests, *, num_replicas=1, num_blocks=1000, block_size=16, router=None, horizon_s=None,
        stretch=True, step=None, max_model_len=100_000, **sched):
    sim = Simulation(
        Workload.from_requests(requests),
        ReplicaSetup(num_blocks, block_size, max_model_len, SchedulerConfig(**sched)),
        num_replicas,
        router or RoundRobinRouter(),
        step or LinearStepModel(),
        horizon_s=horizon_s,
        fast_path=stretch,
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out, sim


def test_lone_request_ttft_is_its_prefill_step_time():
    out, _ = run([Request(0.0, prompt_tokens=100, output_tokens=5)])
    t = out.requests
    # prefill: 0.01 + 0.001 * 100 = 0.11 s; each decode: 0.01 + 0.001 * 1 = 0.011 s.
    assert t.ttft_s()[0] == pytest.approx(0.11)
    assert t.e2e_s()[0] == pytest.approx(0.11 + 4 * 0.011)
    assert t.tpot_s()[0] == pytest.approx(0.011)
    assert t.max_itl_s[0] == pytest.approx(0.011)
    assert t.queue_delay_s()[0] == 0.0
    assert out.num_steps == 5
    assert t.status[0] == FINISHED and t.tokens_generated[0] == 5


def test_request_arriving_mid_step_joins_the_next_iteration():
    out, _ = run([Request(0.0, 100, 3), Request(0.05, 100, 3)])
    t = out.requests
    # a prefills on [0, 0.11]; at 0.11 the batch is a's decode + b's prompt:
    # 0.01 + 0.001 * 101 = 0.111 s, so b's first token comes at 0.221.
    assert t.first_token_s[1] == pytest.approx(0.221)
    assert t.ttft_s()[1] == pytest.approx(0.171)
    assert t.queue_delay_s()[1] == pytest.approx(0.06)
    # a's second token also lands at 0.221: its first gap is 0.111.
    assert t.max_itl_s[0] == pytest.approx(0.111)


def test_simultaneous_arrivals_share_the_first_iteration():
    out, _ = run([Request(1.0, 10, 2), Request(1.0, 20, 2)])
    # One prefill step of 30 tokens: 0.01 + 0.03 = 0.04 s for both.
    assert list(out.requests.first_token_s) == pytest.approx([1.04, 1.04])


def test_round_robin_and_least_outstanding_routing():
    reqs = [Request(0.1 * i, 10, 50 if i == 0 else 2) for i in range(5)]
    out, _ = run(reqs, num_replicas=2, router=RoundRobinRouter())
    assert list(out.requests.replica) == [0, 1, 0, 1, 0]
    out, _ = run(reqs, num_replicas=2, router=LeastOutstandingRouter())
    # Request 0 stays busy on replica 0; the short ones finish before the
    # next arrives, so replica 1 always has fewer outstanding.
    assert list(out.requests.replica) == [0, 1, 1, 1, 1]


def test_requests_that_can_never_fit_are_rejected_with_a_reason():
    reqs = [Request(0.0, 90, 20), Request(0.0, 10, 5), Request(0.0, 16 * 4, 2)]
    out, _ = run(reqs, num_blocks=4, max_model_len=100)
    t = out.requests
    assert list(t.status) == [REJECTED, FINISHED, REJECTED]
    assert list(t.reject_reason) == ["exceeds_max_model_len", "", "exceeds_kv_capacity"]
    assert list(t.tokens_generated) == [0, 5, 0]


def test_horizon_leaves_requests_in_flight_and_books_balance():
    reqs = [Request(0.0, 100, 1000), Request(0.5, 10, 2), Request(50.0, 10, 2)]
    out, _ = run(reqs, horizon_s=1.0)
    t = out.requests
    assert len(t) == 2  # the third never arrived
    assert t.status[0] == IN_FLIGHT and t.status[1] == FINISHED
    assert 0 < t.tokens_generated[0] < 1000
    assert math.isnan(t.finish_s[0])
    assert out.sim_time_s == 1.0


def test_preemption_is_recorded_and_everything_finishes():
    reqs = [Request(0.0, 80, 40), Request(0.0, 80, 40)]
    out, sim = run(reqs, num_blocks=11)
    t = out.requests
    assert list(t.status) == [FINISHED, FINISHED]
    assert list(t.num_preemptions) == [0, 1]
    assert sim.replicas[0].scheduler.kv.num_free_blocks == 11


@pytest.mark.parametrize("router", [RoundRobinRouter, LeastOutstandingRouter])
def test_decode_stretches_give_identical_results_to_stepping(router):
    rng = np.random.default_rng(3)
    reqs = [
        Request(float(a), int(p), int(o))
        for a, p, o in zip(np.cumsum(rng.exponential(0.05, 300)), rng.integers(1, 600, 300), rng.integers(1, 300, 300))
    ]
    step = LinearStepModel(0.005, 0.0002, 1e-7)
    fast, _ = run(reqs, num_replicas=2, num_blocks=300, step=step, stretch=True, max_num_seqs=32, router=router())
    slow, _ = run(reqs, num_replicas=2, num_blocks=300, step=step, stretch=False, max_num_seqs=32, router=router())
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
    assert fast.num_steps == slow.num_steps
    # The sampled time series is the same too: stretches replay their inner samples.
    assert len(fast.timeseries) > 10
    for name, col in fast.timeseries.columns().items():
        np.testing.assert_array_equal(col, slow.timeseries.columns()[name], err_msg=name)
    assert fast.requests.num_preemptions.sum() > 0  # the case exercises preemption too


def test_a_broken_token_book_raises():
    out, sim = run([Request(0.0, 10, 3)])
    sim.replicas[0].scheduler.num_tokens_produced += 1
    with pytest.raises(InvariantError, match="token books"):
        check_conservation(out.requests, sim.replicas)


def test_rejection_boundaries_are_exact():
    # max_model_len 100: 90 + 10 fits, 90 + 11 does not.  KV: 4 blocks of 16 =
    # 64 tokens; a request's peak is prompt + output - 1 tokens: 60 + 5 fits, 60 + 6 does not.
    reqs = [Request(0.0, 90, 10), Request(0.0, 90, 11)]
    out, _ = run(reqs, num_blocks=1000, max_model_len=100)
    assert list(out.requests.reject_reason) == ["", "exceeds_max_model_len"]
    reqs = [Request(0.0, 60, 5), Request(1.0, 60, 6)]
    out, _ = run(reqs, num_blocks=4, max_model_len=1000)
    assert list(out.requests.reject_reason) == ["", "exceeds_kv_capacity"]
    # Without chunked prefill a recompute must fit one iteration's budget.
    reqs = [Request(0.0, 30, 11), Request(1.0, 30, 12)]
    out, _ = run(reqs, num_blocks=1000, chunked_prefill=False, max_num_seqs=4, max_num_batched_tokens=40)
    assert list(out.requests.reject_reason) == ["", "exceeds_token_budget"]
