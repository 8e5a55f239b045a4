"""RAG chunk caches (Cache-Craft): reuse at any position, recomputed share, LRU, loads; RAG prompts."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.errors import ConfigError
from servesim.kvcache.chunk_cache import ChunkCache
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.prefix_chains import rag_prompts
from servesim.workload.request import Workload


def test_a_cached_chunk_is_reused_anywhere_but_for_its_recomputed_share():
    cache = ChunkCache(capacity_bytes=3 * 512 * 10.0, bytes_per_token=10.0, chunk_tokens=512, recompute_fraction=0.15)
    cache.insert((7, 8))
    # ceil(0.15 x 512) = 77 tokens recomputed: 435 reused per cached chunk, in any order.
    assert cache.reusable_tokens((8, 1, 7)) == 2 * 435
    assert cache.reuse((8, 1, 7), count=True) == 870
    assert cache.hit_chunks == 2 and cache.looked_up_chunks == 3 and cache.reused_tokens == 870
    cache.reuse((7,), count=False)  # a re-admission: not in the books
    assert cache.num_lookups == 1
    # Room for three chunks: a fourth pushes out the least recently used (8 was used before 7).
    cache.insert((1, 2))
    assert 8 not in cache and 7 in cache and 1 in cache and 2 in cache


def test_a_chunk_cache_off_the_gpu_prices_its_loads():
    cache = ChunkCache(1e9, 100.0, 100, 0.0, bytes_per_s=1e4)
    cache.insert((1,))
    cache.reuse((1,), count=True)  # 100 tokens x 100 bytes at 10 kB/s
    assert cache.take_stall_s() == pytest.approx(1.0)
    assert cache.take_stall_s() == 0.0


class Picks:
    """A generator whose choice() returns the given chunk rows in turn."""

    def __init__(self, rows):
        self.rows = list(rows)

    def choice(self, n, size, replace, p):
        assert not replace and size == len(self.rows[0])
        return np.array(self.rows.pop(0))


def test_rag_prompts_share_prefix_blocks_only_behind_equal_leading_chunks():
    w = Workload.from_arrays([0.0, 1.0, 2.0], [10, 10, 10], [1, 1, 1])
    out = rag_prompts(w, Picks([(3, 5), (3, 6), (5, 3)]), num_chunks=10, chunks_per_request=2, chunk_tokens=64,
                      zipf=1.0, block_tokens=32)
    assert out.prompt_tokens.tolist() == [138, 138, 138] and out.chunk_ids == [(3, 5), (3, 6), (5, 3)]
    a, b, c = out.prefix_block_ids
    assert len(a) == 5  # ceil(138 / 32): 4 blocks of chunks, 1 reaching the question
    assert a[:2] == b[:2] and a[2] != b[2]  # chunk 3 leads both; then 5 vs 6
    assert not set(a[:4]) & set(c[:4])  # the same chunks in another order share no prefix
    assert a[4] != b[4]  # blocks reaching the question are fresh


def test_a_reused_chunk_skips_its_prefill_in_a_run():
    """Two prompts of chunks (1, 2) then (2, 1), 64 tokens each, plus 10-token questions; the second
    reuses both chunks but for 25%: it computes 2 x 16 + 10 = 42 tokens."""
    w = rag_prompts(Workload.from_arrays([0.0, 5.0], [10, 10], [2, 2]), Picks([(0, 1), (1, 0)]),
                    num_chunks=2, chunks_per_request=2, chunk_tokens=64, zipf=0.0, block_tokens=16)
    setup = ReplicaSetup(1000, 16, 100_000, SchedulerConfig(), kv_bytes_per_token=1.0,
                         make_chunk_cache=lambda: ChunkCache(1e9, 1.0, 64, 0.25))
    sim = Simulation(w, setup, 1, RoundRobinRouter(), LinearStepModel())
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    t = out.requests
    assert t.cached_tokens.tolist() == [0, 96]
    assert t.first_token_s[1] == 5.0 + (0.01 + 0.001 * 42)


def test_chunk_cache_config_checks():
    with pytest.raises(ConfigError, match="set workload.rag"):
        servesim.simulate({"cluster": {"chunk_cache": {"capacity_gb": 1}}})
    with pytest.raises(ConfigError, match="cannot be combined"):
        servesim.simulate({"cluster": {"chunk_cache": {"capacity_gb": 1}, "prefix_caching": True}})
