"""Each router's choice on small hand-made states, and stale views in a run."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import LinearStepModel

from servesim.cluster.conservation import check_conservation
from servesim.cluster.router_config import RouterConfig
from servesim.cluster.routers import (
    LapsRouter,
    PrefixAwareRouter,
    LeastKvRouter,
    LeastOutstandingRouter,
    PowerOfTwoRouter,
    RandomRouter,
    RoundRobinRouter,
    SessionAffinityRouter,
    make_router,
)
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.cluster.views import ReplicaSnapshot
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.sequence import Sequence
from servesim.workload.request import Request, Workload


def views(outstanding, kv=None):
    kv = kv or [0.0] * len(outstanding)
    return [ReplicaSnapshot(i, o, k) for i, (o, k) in enumerate(zip(outstanding, kv))]


def req(rid=0, session=None):
    return Sequence(rid, 0.0, 100, 10, session=session)


class ScriptedRng:
    """A stand-in generator whose uniform draws are given in advance."""

    def __init__(self, draws):
        self.draws = list(draws)

    def random(self, n):
        out, self.draws = self.draws[:n], self.draws[n:]
        return np.array(out + [0.0] * (n - len(out)))


def test_round_robin_takes_replicas_in_turn():
    router = RoundRobinRouter()
    assert [router.route(req(i), views([5, 0, 9])) for i in range(4)] == [0, 1, 2, 0]


def test_least_outstanding_picks_the_fewest_and_the_lowest_index_on_ties():
    assert LeastOutstandingRouter().route(req(), views([3, 1, 1])) == 1
    assert LeastOutstandingRouter().route(req(), views([2, 2, 2])) == 0


def test_least_kv_picks_the_emptiest_cache_then_the_fewest_outstanding():
    assert LeastKvRouter().route(req(), views([0, 5, 3], [0.5, 0.2, 0.2])) == 2
    assert LeastKvRouter().route(req(), views([0, 0, 0], [0.9, 0.1, 0.3])) == 1
    assert LeastKvRouter().route(req(), views([4, 4], [0.3, 0.3])) == 0


def test_random_maps_each_uniform_draw_to_a_replica():
    # n = 4: u in [k/4, (k+1)/4) picks replica k.
    router = RandomRouter(ScriptedRng([0.1, 0.9, 0.5, 0.25]))
    assert [router.route(req(), views([0] * 4)) for _ in range(4)] == [0, 3, 2, 1]


def test_power_of_two_compares_two_distinct_replicas():
    state = views([1, 0, 5, 0])
    # First draw 0.6 -> replica 2; second 0.1 among the other three -> 0; 0 has 1 < 5 outstanding.
    assert PowerOfTwoRouter(ScriptedRng([0.6, 0.1])).route(req(), state) == 0
    # Second draw 0.7 -> index 2 of the others (0, 1, 3) -> replica 3, with 0 outstanding.
    assert PowerOfTwoRouter(ScriptedRng([0.6, 0.7])).route(req(), state) == 3
    # A tie keeps the first drawn: replicas 1 and 3 both have 0.
    assert PowerOfTwoRouter(ScriptedRng([0.3, 0.9])).route(req(), state) == 1
    assert PowerOfTwoRouter(ScriptedRng([0.9])).route(req(), views([7])) == 0


def test_session_affinity_keeps_a_session_where_it_started():
    router = SessionAffinityRouter()
    assert router.route(req(0, "a"), views([2, 0, 1])) == 1  # placed by least outstanding
    assert router.route(req(1, "a"), views([0, 5, 0])) == 1  # stays, whatever the load
    assert router.route(req(2, None), views([0, 5, 0])) == 0  # no session: least outstanding
    assert router.route(req(3, "b"), views([3, 5, 0])) == 2


def test_laps_splits_replicas_by_prompt_length():
    router = LapsRouter(threshold_tokens=256, long_fraction=0.5)  # of 4: short {0, 1}, long {2, 3}
    state = views([3, 1, 0, 0])
    assert router.route(Sequence(0, 0.0, 256, 10), state) == 1  # short (<= 256): least outstanding of 0, 1
    assert router.route(Sequence(1, 0.0, 257, 10), state) == 2  # long: 2 and 3 tie, lowest index
    assert [LapsRouter(256, f).num_long(4) for f in (0.1, 0.3, 0.5, 0.9)] == [1, 2, 2, 3]
    assert LapsRouter(256, 0.5).route(Sequence(2, 0.0, 5000, 10), views([9])) == 0


class CachedView(ReplicaSnapshot):
    """A snapshot with a fixed prefix cache content."""

    __slots__ = ("cached",)

    def __init__(self, index, outstanding, cached):
        super().__init__(index, outstanding, 0.0)
        self.cached = cached

    def prefix_match(self, block_ids):
        n = 0
        for b in block_ids:
            if b not in self.cached:
                break
            n += 1
        return n


def test_prefix_aware_takes_the_longest_cached_prefix_within_the_load_bound():
    prompt = Sequence(0, 0.0, 2000, 10)
    prompt.prefix = (1, 2, 3, 4)
    state = [CachedView(0, 0, set()), CachedView(1, 3, {1, 2}), CachedView(2, 9, {1, 2, 3, 4}), CachedView(3, 2, {1})]
    # Loads 0, 3, 9, 2 with slack 4: replica 2 (9 > 0 + 4) is out; of the rest, 1 holds 2 blocks.
    assert PrefixAwareRouter(load_slack=4).route(prompt, state) == 1
    assert PrefixAwareRouter(load_slack=9).route(prompt, state) == 2  # now within the bound: 4 blocks
    assert PrefixAwareRouter(load_slack=0).route(prompt, state) == 0  # only the least loaded qualifies
    no_prefix = Sequence(1, 0.0, 100, 10)
    assert PrefixAwareRouter(4).route(no_prefix, state) == 0  # no prefix: least outstanding


def test_randomized_policies_need_a_stream():
    with pytest.raises(ValueError, match="needs a random stream"):
        make_router(RouterConfig(policy="random"))
    assert isinstance(make_router(RouterConfig(policy="power_of_two"), np.random.default_rng(0)), PowerOfTwoRouter)


def test_view_delay_must_not_be_negative():
    with pytest.raises(ValueError):
        RouterConfig(view_delay_s=-1.0)


# ------------------------------------------------------------ in a run


def _run(requests, router, *, num_replicas=3, view_delay_s=0.0, stretch=True, **hold):
    sim = Simulation(
        Workload.from_requests(requests),
        ReplicaSetup(1000, 16, 100_000, SchedulerConfig()),
        num_replicas,
        router,
        LinearStepModel(),
        view_delay_s=view_delay_s,
        fast_path=stretch,
        **hold,
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out


def test_a_stale_view_sends_a_burst_to_one_replica():
    # Six long requests arrive within 5 ms, and a seventh at t = 10 s while they still run
    # (each needs 1000 decode steps of >= 10 ms).  Live, least outstanding spreads the
    # burst over the three replicas.  With a 10 s view, every burst request sees the
    # snapshot taken at t = 0 (all idle) and goes to replica 0; the seventh finds the
    # view 10 s old, refreshes it (replica 0: 6 outstanding) and goes to replica 1.
    burst = [Request(0.001 * i, 100, 1000) for i in range(6)] + [Request(10.0, 100, 10)]
    live = _run(burst, LeastOutstandingRouter())
    assert live.requests.replica.tolist() == [0, 1, 2, 0, 1, 2, 0]
    stale = _run(burst, LeastOutstandingRouter(), view_delay_s=10.0)
    assert stale.requests.replica.tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_session_affinity_in_a_run_follows_the_session_ids():
    requests = [
        Request(0.0, 100, 50, session_id="x"),
        Request(0.01, 100, 50, session_id="y"),
        Request(0.02, 100, 50),
        Request(5.0, 100, 50, session_id="x"),
        Request(5.01, 100, 50, session_id="y"),
    ]
    out = _run(requests, SessionAffinityRouter())
    # x -> replica 0 (all idle), y -> 1, the anonymous one -> 2; later turns follow their sessions.
    assert out.requests.replica.tolist() == [0, 1, 2, 0, 1]


def test_laps_batching_window_holds_short_prompts_and_releases_them_together():
    # Two replicas: 0 takes short prompts (<= 256 tokens), 1 long ones.  Two short prompts
    # arrive at 0 and 10 ms; with a 50 ms window both wait at the router and enter replica 0
    # together at 50 ms, in one prefill iteration.  The long prompt is never held.
    requests = [Request(0.0, 100, 5), Request(0.01, 120, 5), Request(0.02, 1000, 5)]
    laps = LapsRouter(256, 0.5)
    out = _run(requests, laps, num_replicas=2, hold_short_s=0.05, short_prompt_tokens=256)
    t = out.requests
    assert t.replica.tolist() == [0, 0, 1]
    assert t.first_scheduled_s.tolist()[:2] == [0.05, 0.05]
    assert t.first_scheduled_s[2] == 0.02
    # LinearStepModel: 10 ms + 1 ms per token, so the shared prefill of 220 tokens ends at 0.28 s.
    assert t.first_token_s.tolist()[:2] == [0.05 + (0.01 + 0.001 * 220)] * 2
    # Without the window the first short prompt starts at once.
    plain = _run(requests, LapsRouter(256, 0.5), num_replicas=2).requests
    assert plain.first_scheduled_s[0] == 0.0
    # The window changes nothing between the fast path and the reference.
    slow = _run(requests, LapsRouter(256, 0.5), num_replicas=2, stretch=False, hold_short_s=0.05,
                short_prompt_tokens=256).requests
    for name, col in t.columns().items():
        np.testing.assert_array_equal(col, slow.columns()[name], err_msg=name)


def test_least_kv_sees_requests_queued_without_kv_as_an_empty_replica():
    # The policy, not a bug (docs/cluster.md): a queued request holds no KV blocks until its
    # replica schedules it, so KV usage does not count it.  Replica 0 runs one request whose
    # 100-token prompt holds 1% of its blocks, with five more queued behind it; replica 1 runs
    # one long-context request holding 30%.  least_kv sends the next request to replica 0,
    # behind the queue; least outstanding sends it to replica 1.
    assert LeastKvRouter().route(req(), views([6, 1], [0.01, 0.30])) == 0
    assert LeastOutstandingRouter().route(req(), views([6, 1], [0.01, 0.30])) == 1


def test_least_kv_in_a_run_piles_a_burst_behind_a_short_request():
    # One sequence at a time per replica.  A long prompt (8,000 tokens, half the KV cache) goes
    # to replica 0; a short one to replica 1, which then holds 1% of its blocks.  A burst of
    # five short requests follows: the four that queue hold no KV, so replica 1 keeps looking
    # emptier and least_kv sends it all five, while least outstanding spreads them.
    requests = [Request(0.0, 8000, 2000), Request(0.001, 100, 2000)] + [Request(1.0 + 0.001 * i, 100, 10) for i in range(5)]
    one_at_a_time = SchedulerConfig(max_num_seqs=1)
    kv = _run_with(requests, LeastKvRouter(), one_at_a_time)
    assert kv.requests.replica.tolist() == [0, 1, 1, 1, 1, 1, 1]
    lo = _run_with(requests, LeastOutstandingRouter(), one_at_a_time)
    assert lo.requests.replica.tolist() == [0, 1, 0, 1, 0, 1, 0]


def _run_with(requests, router, scheduler, num_replicas=2):
    sim = Simulation(
        Workload.from_requests(requests), ReplicaSetup(1000, 16, 100_000, scheduler), num_replicas, router,
        LinearStepModel(),
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out
