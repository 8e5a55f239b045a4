"""The minimal prefix cache: leading-block matches, LRU eviction, and skipped prefill."""

import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.cluster.routers import RoundRobinRouter
from servesim.errors import ConfigError
from servesim.kvcache.prefix_cache import PrefixCache
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload


def test_match_counts_leading_blocks_only():
    cache = PrefixCache(capacity_blocks=10, block_tokens=512)
    cache.insert((1, 2, 3))
    assert cache.peek((1, 2, 3, 4)) == 3
    assert cache.peek((1, 9, 3)) == 1  # the prefix breaks at 9
    assert cache.peek((9, 1, 2)) == 0
    assert cache.peek(()) == 0


def test_least_recently_used_blocks_are_evicted():
    cache = PrefixCache(capacity_blocks=3, block_tokens=512)
    cache.insert((1, 2))
    cache.insert((3,))
    assert cache.lookup((1,)) == 1  # 1 becomes the most recent: order 2, 3, 1
    cache.insert((4,))  # over capacity: 2 goes
    assert cache.peek((2,)) == 0 and cache.peek((1,)) == 1 and cache.peek((3,)) == 1 and len(cache) == 3
    assert cache.num_lookups == 1 and cache.num_hit_blocks == 1


def test_peek_changes_nothing():
    cache = PrefixCache(capacity_blocks=2, block_tokens=16)
    cache.insert((1, 2))
    cache.peek((1,))  # no touch: 1 stays the least recent
    cache.insert((3,))
    assert cache.peek((1,)) == 0 and cache.peek((2,)) == 1


def _run(requests, cache_blocks=100):
    sim = Simulation(
        Workload.from_requests(requests),
        ReplicaSetup(1000, 16, 100_000, SchedulerConfig(), prefix_cache_blocks=cache_blocks, prefix_block_tokens=512),
        1,
        RoundRobinRouter(),
        LinearStepModel(),  # 10 ms + 1 ms per token computed
    )
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out


def test_a_cached_prefix_skips_its_prefill():
    # The first request (1,200 tokens, blocks a, b, c) is admitted at 0 and caches its blocks.
    # The second shares blocks a and b (1,024 tokens): it computes the other 176 tokens only.
    first = Request(0.0, 1200, 2, prefix_block_ids=(10, 11, 12))
    second = Request(5.0, 1200, 2, prefix_block_ids=(10, 11, 99))
    out = _run([first, second])
    t = out.requests
    assert t.cached_tokens.tolist() == [0, 1024]
    assert t.first_token_s[0] == 0.01 + 0.001 * 1200
    assert t.first_token_s[1] == 5.0 + (0.01 + 0.001 * 176)


def test_a_whole_prompt_in_cache_still_computes_one_token():
    out = _run([Request(0.0, 1024, 2, prefix_block_ids=(1, 2)), Request(5.0, 1024, 2, prefix_block_ids=(1, 2))])
    assert out.requests.cached_tokens.tolist() == [0, 1023]
    assert out.requests.first_token_s[1] == 5.0 + (0.01 + 0.001 * 1)


def test_prefix_aware_routing_needs_prefix_caching():
    with pytest.raises(ConfigError, match="needs cluster.prefix_caching: true"):
        servesim.simulate({"router": {"policy": "prefix_aware"}})


def test_the_summary_reports_the_hit_rate():
    s = servesim.simulate({
        "workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 60},
        "cluster": {"model": "qwen2.5-7b", "prefix_caching": True},
    }).summary
    assert s["prefix_cached_tokens"] > 0 and 0 < s["prefix_hit_rate"] < 1
