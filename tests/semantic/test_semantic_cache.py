"""The semantic cache in front of the fleet: lookups, TTL, quota, latency, books, break-even."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.config import validate_config
from servesim.core.events import EventLoop
from servesim.core.rng import RandomStreams
from servesim.errors import ConfigError
from servesim.metrics.records import FINISHED
from servesim.scheduler.sequence import Sequence
from servesim.semantic.config import SemanticCacheConfig
from servesim.semantic.front import FALSE_HIT, HIT, MISS, RELATED, UNRELATED, SemanticFront, decide, draw_requests, zipf_cdf
from servesim.semantic.store import CategoryStore
from servesim.semantic.summary import break_even_hit_rate
from servesim.workload.request import Request, Workload

# ------------------------------------------------------------------ decisions


def test_a_lookup_hits_falsely_hits_or_misses_by_the_best_score_at_the_threshold():
    # Negative scores: no such entry.  The related entry wins a tie.
    assert decide(0.90, -1.0, 0.85) == HIT
    assert decide(0.85, -1.0, 0.85) == HIT  # at the threshold
    assert decide(0.80, 0.86, 0.85) == FALSE_HIT  # the unrelated entry is the best and passes
    assert decide(0.88, 0.88, 0.85) == HIT
    assert decide(0.84, 0.70, 0.85) == MISS
    assert decide(-1.0, -1.0, 0.01) == MISS  # an empty category never answers


def test_entries_expire_after_their_ttl():
    store = CategoryStore(ttl_s=10.0, max_entries=5)
    store.store(1, 0.0)
    store.expire(9.999)
    assert 1 in store
    store.expire(10.0)  # live while now < stored + ttl
    assert 1 not in store and store.num_expired == 1
    store.store(2, 0.0)
    store.store(2, 5.0)  # storing again refreshes its TTL: live until 15
    store.expire(14.0)
    assert 2 in store
    store.expire(15.0)
    assert len(store) == 0


def test_the_quota_evicts_the_least_recently_used_entry():
    store = CategoryStore(ttl_s=100.0, max_entries=2)
    store.store(1, 0.0)
    store.store(2, 1.0)
    store.touch(1)  # a hit on 1: 2 is now the least recently used
    store.store(3, 2.0)
    assert store.topics() == [1, 3] and store.num_evicted == 1
    store.store(4, 3.0)  # 1 was used before 3
    assert store.topics() == [3, 4]
    # Expiry still goes by storing time: 3 (stored at 2) ends at 102, before 4.
    store.expire(102.0)
    assert store.topics() == [4]


def test_topics_follow_zipf_and_categories_their_shares():
    # P(k) ~ 1/k for k = 1..3: weights 1, 1/2, 1/3 (sum 11/6): cdf 6/11, 9/11, 1.
    assert zipf_cdf(3, 1.0) == pytest.approx([6 / 11, 9 / 11, 1.0])
    cache = SemanticCacheConfig.model_validate({"categories": [
        {"name": "a", "share": 3, "num_topics": 3, "zipf_s": 1.0},
        {"name": "b", "share": 1, "num_topics": 1},
    ]})
    category, topic = draw_requests(list(cache.categories), 40_000, RandomStreams(1).stream("semantic_cache.requests"))
    assert (category == 0).mean() == pytest.approx(0.75, abs=0.01)
    a = topic[category == 0]
    assert [(a == k).mean() for k in range(3)] == pytest.approx([6 / 11, 3 / 11, 2 / 11], abs=0.01)
    assert (topic[category == 1] == 0).all()


def test_search_latency_defaults_are_the_published_ones():
    memory = SemanticCacheConfig.model_validate({"categories": [{"name": "a", "share": 1, "num_topics": 1}],
                                                  "search": {"location": "memory"}})
    assert memory.search.lookup_s() == 0.002
    assert memory.search.model_copy(update={"location": "remote"}).lookup_s() == 0.030
    assert memory.search.model_copy(update={"latency_s": 0.01}).lookup_s() == 0.01


# ------------------------------------------------------- the front, by hand


class _Sim:
    """What the front needs of a simulation: its loop, and where answered and passed requests go."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        self.answered: list[tuple[int, float]] = []
        self.admitted: list[tuple[int, float]] = []
        self.front = None

    def _finish_from_cache(self, seq, now):
        self.answered.append((seq.rid, now))

    def _admit(self, seq, now):
        self.admitted.append((seq.rid, now))


def _front(n, *, threshold=0.85, ic=None):
    cache = {"categories": [{"name": "a", "share": 1, "num_topics": 10, "threshold": threshold}],
             "search": {"latency_s": 0.03}}
    if ic is not None:
        cache["ic_cache"] = ic
    front = SemanticFront(SemanticCacheConfig.model_validate(cache), n, RandomStreams(0))
    sim = _Sim()
    front.attach(sim)
    return front, sim


def test_hits_false_hits_and_misses_against_what_the_cache_holds():
    front, sim = _front(4, ic={"min_similarity": 0.7})
    # Hand-set topics and scores (paraphrase: against its own topic; unrelated: the nearest other).
    front.topic[:] = [0, 1, 0, 2]
    front.paraphrase[:] = [0.95, 0.95, 0.80, 0.99]
    front.unrelated[:] = [0.90, 0.90, 0.60, 0.75]
    seqs = [Sequence(i, 0.0, 100, 10) for i in range(4)]
    front.arrive(seqs[0], 0.0)  # empty cache: a miss whatever its scores
    sim.loop.run()
    assert sim.admitted == [(0, 0.03)] and front.outcome[0] == MISS
    front.on_finished([seqs[0]], 1.0)  # topic 0 stored at 1.0
    front.arrive(seqs[1], 2.0)  # topic 1 is not held; the unrelated topic 0 scores 0.90 >= 0.85: a false hit
    front.arrive(seqs[2], 2.0)  # topic 0 is held but its paraphrase scores 0.80 and nothing else is held: a miss
    front.arrive(seqs[3], 2.0)  # topic 2 not held, the unrelated 0.75 < 0.85: a miss
    sim.loop.run()
    assert list(front.outcome) == [MISS, FALSE_HIT, MISS, MISS]
    assert sim.answered == [(1, 2.03)] and sim.admitted[1:] == [(2, 2.03), (3, 2.03)]
    # IC-Cache examples at 0.7: request 2's best is its own topic (0.80), request 3's the unrelated one (0.75).
    assert list(front.examples) == [0, 0, RELATED, UNRELATED]
    assert front.tokens_served == 10


# ------------------------------------------------------------ whole runs

# One category of one topic: every request asks the same question.  Scores near 1
# (Beta(50, 1)) against a threshold of 0.05: a request hits whenever the answer is held.
ONE_TOPIC = {"categories": [{"name": "q", "share": 1, "num_topics": 1, "threshold": 0.05, "ttl_s": 50.0}],
             "similarity": {"paraphrase": {"a": 50, "b": 1}}, "search": {"location": "remote"}}


def _run(cache, requests, **config):
    # The plain harness: no front-end latency on top of the fake steps.
    config = {"cluster": {"engine": "pytorch"}, **config}
    return servesim.simulate({"semantic_cache": cache, **config}, workload=Workload.from_requests(requests),
                             step_model=LinearStepModel())


def test_a_miss_pays_the_search_in_its_ttft_and_a_hit_is_answered_after_it():
    result = _run(ONE_TOPIC, [Request(0.0, 100, 10), Request(20.0, 100, 10), Request(100.0, 100, 10)])
    t = result.requests
    # Request 0 misses: it reaches the replica after the 30 ms search; its prefill step is
    # 0.01 + 100 x 0.001 = 0.11 s (first token at 0.14), then 9 decode steps of 0.011 s: done at 0.239.
    assert t.first_token_s[0] == pytest.approx(0.03 + 0.11)
    assert t.finish_s[0] == pytest.approx(0.14 + 9 * 0.011)
    # Request 1 at 20 s: the answer stored at 0.239 lives until 50.239: a hit, answered at 20.03 on no replica.
    assert t.replica[1] == -1 and t.status[1] == FINISHED
    assert t.first_token_s[1] == pytest.approx(20.03) and t.finish_s[1] == pytest.approx(20.03)
    assert t.tokens_generated[1] == 10
    # Request 2 at 100 s: the entry expired at 50.239 (a hit does not refresh its TTL): a miss again.
    assert t.replica[2] == 0 and t.first_token_s[2] == pytest.approx(100.14)
    s = result.summary["semantic_cache"]
    assert (s["lookups"], s["hits"], s["false_hits"]) == (3, 1, 0)
    assert s["categories"]["q"]["expired"] == 1
    # Token books: the replica produced 10 + 10, the cache served 10: 30 recorded.
    assert s["tokens_served_from_cache"] == 10 and int(t.tokens_generated.sum()) == 30
    load = s["offered_load"]
    assert (load["requests_to_fleet"], load["prompt_tokens_to_fleet"], load["prompt_tokens_arrived"]) == (2, 200, 300)


def test_break_even_hit_rate_by_hand():
    # A lookup of 30 ms against 200 ms saved per hit: hits must be above 15%; in memory (2 ms), 1%.
    assert break_even_hit_rate(0.030, 0.200) == pytest.approx(0.15)
    assert break_even_hit_rate(0.002, 0.200) == pytest.approx(0.01)
    assert break_even_hit_rate(0.030, 0.0) is None
    result = _run(ONE_TOPIC, [Request(0.0, 100, 10), Request(20.0, 100, 10)])
    b = result.summary["semantic_cache"]["break_even"]
    # The fleet finished request 0 in 0.239 s, 0.209 of it past the search: h* = 0.03 / 0.209.
    assert b["fleet_latency_s"] == pytest.approx(0.209)
    assert b["hit_rate"] == pytest.approx(0.03 / 0.209)
    # Its TTFT past the search is the 0.11 s prefill: h*_ttft = 0.03 / 0.11.
    assert b["hit_rate_ttft"] == pytest.approx(0.03 / 0.11)
    # Measured: 1 hit in 2 lookups, 0.5 x 0.209 > 0.03.
    assert b["lowers_mean_latency"] is True and result.summary["semantic_cache"]["hit_rate"] == 0.5


def test_requests_missing_together_both_reach_the_fleet():
    # Two requests at the same instant both miss (nothing is stored until one finishes).
    result = _run(ONE_TOPIC, [Request(0.0, 100, 10), Request(0.0, 100, 10), Request(10.0, 50, 5)])
    assert list(result.requests.replica) == [0, 0, -1]


def test_a_cache_that_answers_nothing_and_costs_nothing_changes_nothing():
    requests = [Request(0.05 * i, 50 + 7 * i, 5 + i % 9) for i in range(60)]
    plain = servesim.simulate({"cluster": {"engine": "pytorch"}}, workload=Workload.from_requests(requests),
                              step_model=LinearStepModel())
    idle = _run({**ONE_TOPIC, "serve_responses": False, "search": {"latency_s": 0.0}}, requests)
    for name in ("replica", "first_token_s", "finish_s", "tokens_generated"):
        assert np.array_equal(getattr(plain.requests, name), getattr(idle.requests, name)), name


def test_a_run_is_deterministic_and_the_cache_draws_do_not_shift_the_workload():
    overrides = ["workload.num_requests=300", "cluster.num_replicas=1"]
    a = servesim.simulate(servesim.config.load_config("examples/semantic-cache.yaml", overrides))
    b = servesim.simulate(servesim.config.load_config("examples/semantic-cache.yaml", overrides))
    plain = servesim.simulate(servesim.config.load_config("examples/semantic-cache.yaml", overrides + ["semantic_cache=null"]))
    assert a.summary["semantic_cache"] == b.summary["semantic_cache"]
    assert np.array_equal(a.requests.finish_s, b.requests.finish_s)
    assert np.array_equal(a.requests.prompt_tokens, plain.requests.prompt_tokens)
    assert np.array_equal(a.requests.arrival_s, plain.requests.arrival_s)
    assert a.summary["semantic_cache"]["hits"] > 0


# ----------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("cache", "router", "message"),
    [
        ({"categories": [{"name": "a", "share": 1, "num_topics": 1}] * 2}, {},
         "semantic_cache: category name 'a' appears more than once"),
        ({"categories": [{"name": "a", "share": 0, "num_topics": 1}]}, {},
         "semantic_cache.categories.0.share = 0: Input should be greater than 0"),
        ({"categories": []}, {}, "semantic_cache.categories"),
        ({"categories": [{"name": "a", "share": 1, "num_topics": 1, "threshold": 1.5}]}, {},
         "semantic_cache.categories.0.threshold = 1.5"),
        ({"categories": [{"name": "a", "share": 1, "num_topics": 1}], "search": {"location": "disk"}}, {},
         "semantic_cache.search.location = 'disk'"),
    ],
)
def test_bad_semantic_cache_config_is_one_line_naming_the_field(cache, router, message):
    with pytest.raises(ConfigError) as err:
        validate_config({"semantic_cache": cache, **router})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_agent_workload_cannot_sit_behind_the_cache():
    with pytest.raises(ConfigError, match="semantic_cache: agent workloads"):
        validate_config({"semantic_cache": ONE_TOPIC, "workload": {"kind": "agent"}})


def test_the_cache_sits_in_front_of_an_autoscaled_fleet_with_balanced_books():
    # simulate checks the books (cache-served tokens included); every request is answered or reaches the fleet.
    s = servesim.simulate(servesim.config.load_config(
        "examples/semantic-cache.yaml", ["workload.num_requests=500", "autoscaling.policy=kpa", "autoscaling.max_replicas=3"]
    )).summary
    c = s["semantic_cache"]
    assert s["num_finished"] == 500
    assert c["hits"] + c["offered_load"]["requests_to_fleet"] == 500 and c["hits"] > 0
