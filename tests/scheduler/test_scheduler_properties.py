"""Property-based checks of the scheduler and KV invariants over random workloads."""

import numpy as np
from fakes import LinearStepModel
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.cluster.conservation import check_conservation
from servesim.cluster.router_config import RouterConfig
from servesim.cluster.routers import make_router
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.kvcache.manager import KVCacheManager
from servesim.scheduler.batch_scheduler import BatchScheduler
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.sequence import Sequence
from servesim.workload.request import Request, Workload

requests_st = st.lists(
    st.tuples(st.integers(1, 200), st.integers(1, 60), st.integers(0, 3)), min_size=1, max_size=25
)
config_st = st.fixed_dictionaries(
    {
        "max_num_seqs": st.integers(1, 8),
        "max_num_batched_tokens": st.integers(8, 256),
        "chunked_prefill": st.booleans(),
        "policy": st.sampled_from(["fcfs", "priority"]),
    }
)


def _fits(p, o, num_blocks, block_size, cfg):
    peak = p + o - 1
    if -(-peak // block_size) > num_blocks:
        return False
    return cfg["chunked_prefill"] or peak <= cfg["max_num_batched_tokens"]


@settings(max_examples=150, deadline=None)
@given(requests_st, config_st, st.integers(4, 40), st.sampled_from([1, 4, 16]))
def test_every_step_respects_budgets_and_block_books(reqs, cfg, num_blocks, block_size):
    cfg["max_num_batched_tokens"] = max(cfg["max_num_batched_tokens"], cfg["max_num_seqs"])
    sched = BatchScheduler(SchedulerConfig(**cfg), KVCacheManager(num_blocks, block_size))
    seqs = [Sequence(i, 0.0, p, o, prio) for i, (p, o, prio) in enumerate(reqs) if _fits(p, o, num_blocks, block_size, cfg)]
    for s in seqs:
        sched.add(s)
    kv = sched.kv
    t = 0.0
    for _ in range(20_000):
        plan = sched.schedule(t)
        if plan is None:
            break
        assert sum(plan.num_new) <= cfg["max_num_batched_tokens"]
        assert sched.num_running <= cfg["max_num_seqs"]
        assert len({id(s) for s in plan.seqs}) == len(plan.seqs)
        assert not set(map(id, sched.running)) & set(map(id, sched.waiting))
        for s, n in zip(plan.seqs, plan.num_new):
            assert n >= 1 and s.num_computed + n <= s.num_tokens
            # Exactly the blocks its computed tokens need: no leak, no shortfall.
            assert kv.num_blocks_of(s.rid) == -(-(s.num_computed + n) // block_size)
        held = sum(kv.num_blocks_of(s.rid) for s in sched.running)
        assert kv.num_used_blocks == held and kv.num_used_blocks <= num_blocks
        assert all(kv.num_blocks_of(s.rid) == 0 for s in sched.waiting)
        t += 1.0
        sched.on_step_done(plan, t)
    # Liveness and conservation: everything that fits finishes and every block is back.
    assert all(s.num_generated == s.max_output for s in seqs)
    assert kv.num_free_blocks == num_blocks and sched.num_waiting == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 120), st.integers(1, 80)), min_size=1, max_size=30),
    config_st,
    st.integers(8, 40),
    st.integers(1, 3),
    st.sampled_from(["round_robin", "least_outstanding", "least_kv", "power_of_two"]),
    st.sampled_from([0.0, 0.05]),
)
def test_decode_stretches_never_change_per_request_results(rows, cfg, num_blocks, num_replicas, router, delay):
    # Routers read replicas as of each arrival (outstanding requests, KV in use), so
    # their choices, live or from a stale snapshot, must not depend on stretches either.
    cfg["max_num_batched_tokens"] = max(cfg["max_num_batched_tokens"], cfg["max_num_seqs"])
    arrivals = np.cumsum([g for g, _, _ in rows])
    reqs = [Request(float(a), p, o) for a, (_, p, o) in zip(arrivals, rows)]

    def run(stretch):
        sim = Simulation(
            Workload.from_requests(reqs),
            ReplicaSetup(num_blocks, 16, 10_000, SchedulerConfig(**cfg)),
            num_replicas,
            make_router(RouterConfig(policy=router), np.random.default_rng(7)),
            LinearStepModel(0.004, 0.0003, 2e-6),
            fast_path=stretch,
            view_delay_s=delay,
        )
        out = sim.run()
        check_conservation(out.requests, sim.replicas)
        return out

    fast, slow = run(True), run(False)
    for name, col in fast.requests.columns().items():
        np.testing.assert_array_equal(col, slow.requests.columns()[name], err_msg=name)
    for name, col in fast.timeseries.columns().items():
        np.testing.assert_array_equal(col, slow.timeseries.columns()[name], err_msg="timeseries " + name)
