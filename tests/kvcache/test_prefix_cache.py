"""Prefix caching: shared blocks, reference counts, LRU eviction, lower tiers, and hit accounting."""

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.errors import ConfigError
from servesim.kvcache.prefix_cache import PrefixCachingKVManager
from servesim.kvcache.tiers import KvTier
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.request import Request, Workload

MOONCAKE = Path(servesim.__file__).parent / "data" / "traces" / "mooncake_conversation.jsonl"


def manager(num_blocks=20, tiers=()):
    # KV blocks of 4 tokens, prefix blocks of 8 tokens: two KV blocks per entry.
    return PrefixCachingKVManager(num_blocks, 4, 8, bytes_per_token=100.0, tiers=tiers)


def computed(kv, rid, chain, prompt):
    """A request admitted with its hits, its prompt computed and filed."""
    hit = kv.attach_prefix(rid, chain)
    assert kv.allocate_slots(rid, prompt)
    kv.commit_lookup(rid, True)
    kv.register_prefix(rid, chain, prompt)
    return hit


def test_a_computed_prompt_is_shared_by_the_next_and_counted_once():
    kv = manager()
    assert computed(kv, 1, (10, 11, 12), 20) == 0  # 20 tokens: entries 10, 11 full; 12 holds one full KV block
    assert kv.num_used_blocks == 5 and kv.num_cached_blocks == 5
    # The second prompt shares 10 and 11 (16 tokens), then misses.
    assert kv.attach_prefix(2, (10, 11, 99)) == 16
    assert kv.allocate_slots(2, 24)  # its own third KV pair: 2 more blocks
    kv.commit_lookup(2, True)
    assert kv.num_used_blocks == 7 and kv.audit([1, 2]) == ""
    assert kv.gpu_hit_blocks == 2 and kv.looked_up_blocks == 6 and kv.num_lookups == 2


def test_idle_entries_are_free_room_and_are_evicted_least_recently_used_first():
    kv = manager(num_blocks=8)
    computed(kv, 1, (1, 2), 16)  # entries 1, 2: 4 blocks
    computed(kv, 2, (3,), 8)  # entry 3: 2 blocks
    kv.free(1)
    kv.free(2)
    assert kv.num_used_blocks == 0 and kv.num_free_blocks == 8 and kv.pool.num_free == 2
    assert kv.audit([]) == ""
    # Touch 1 (attach and let go): idle order becomes 2, 3, 1.
    kv.attach_prefix(3, (1,))
    kv.free(3)
    # A request needing 4 blocks: 2 are free, entry 2 (least recently used) goes.
    assert kv.allocate_slots(4, 16)
    assert kv.peek((1,)) == 1 and kv.peek((3,)) == 1 and kv.peek((2,)) == 0 and kv.num_evicted == 1
    # A referenced entry is never evicted: with 1 and 3 held, nothing is left to take.
    kv.attach_prefix(5, (1,))
    kv.attach_prefix(6, (3,))
    assert not kv.allocate_slots(7, 4) and kv.audit([4, 5, 6]) == ""


def test_only_first_admissions_count_in_the_books():
    kv = manager()
    computed(kv, 1, (1,), 8)
    kv.attach_prefix(2, (1, 2))  # admission fails: released, not counted
    kv.free(2)
    kv.attach_prefix(2, (1, 2))
    kv.commit_lookup(2, True)
    kv.free(2)
    kv.attach_prefix(2, (1, 2))  # re-admitted after a preemption: not counted again
    kv.commit_lookup(2, False)
    assert kv.num_lookups == 2 and kv.looked_up_blocks == 3 and kv.gpu_hit_blocks == 1


def test_a_waiting_copy_of_a_cached_hash_stays_private():
    kv = manager()
    kv.allocate_slots(1, 8)
    kv.allocate_slots(2, 8)
    kv.register_prefix(1, (7,), 8)
    kv.register_prefix(2, (7,), 8)  # 7 is cached already: 2's blocks are its own
    kv.free(2)
    assert kv.pool.num_used == 2 and kv.audit([1]) == ""


def test_evicted_entries_go_down_a_tier_and_come_back_with_a_load():
    cpu = KvTier("cpu", capacity_bytes=1600.0, bytes_per_s=1000.0, latency_s=0.5, bytes_per_token=100.0)
    kv = manager(num_blocks=4, tiers=[cpu])
    computed(kv, 1, (1, 2), 16)
    kv.free(1)
    assert kv.allocate_slots(2, 16)  # all 4 blocks: both entries go to the CPU tier (800 bytes each)
    assert 1 in cpu and 2 in cpu and cpu.bytes_stored == 1600.0
    kv.free(2)
    # A hit in the CPU tier: 8 tokens x 100 bytes over 1000 B/s + 0.5 s, for each entry.
    assert kv.attach_prefix(3, (1, 2)) == 16
    kv.commit_lookup(3, True)
    assert cpu.num_loads == 2 and kv.tier_hit_blocks == {"cpu": 2} and cpu.bytes_loaded == 1600.0 and 1 not in cpu
    assert kv.take_stall_s(0.1) == pytest.approx(2 * (0.5 + 0.8))
    assert kv.take_stall_s(0.1) == 0.0  # taken once
    assert kv.audit([3]) == ""


def test_a_full_tier_pushes_its_oldest_entry_down_and_out():
    ssd = KvTier("ssd", 800.0, 1000.0, 0.0, 100.0)
    cpu = KvTier("cpu", 800.0, 1000.0, 0.0, 100.0)
    kv = manager(num_blocks=2, tiers=[cpu, ssd])
    for rid, h in enumerate((1, 2, 3)):
        computed(kv, rid, (h,), 8)
        kv.free(rid)
    # GPU holds 3; 2 went to the CPU, pushing 1 to the SSD.
    assert kv.peek((3,)) == 1 and 2 in cpu and 1 in ssd
    computed(kv, 9, (4,), 8)
    kv.free(9)
    assert 3 in cpu and 2 in ssd and kv.peek((1,)) == 0  # 1 fell out of the last tier


def test_io_models_price_loads_by_their_operations():
    block = KvTier("ssd", 1e12, 1e9, 1e-4, 1.0, per_io_s=2e-5, bulk=False)
    bulk = KvTier("ssd", 1e12, 1e9, 1e-4, 1.0, per_io_s=2e-5, bulk=True)
    # Two entries of 32 KV blocks, 1 MB: block I/O pays 64 operations, bulk 2.
    assert block.load_s(2, 64, 1e6) == pytest.approx(1e-4 + 64 * 2e-5 + 1e-3)
    assert bulk.load_s(2, 64, 1e6) == pytest.approx(1e-4 + 2 * 2e-5 + 1e-3)


def test_overlapped_loads_stall_only_beyond_the_step():
    cpu = KvTier("cpu", 1e9, 1000.0, 0.0, 100.0, overlap=True)
    kv = manager(num_blocks=4, tiers=[cpu])
    computed(kv, 1, (1,), 8)
    kv.free(1)
    kv.allocate_slots(2, 16)  # evicts entry 1 to the CPU
    kv.free(2)
    kv.attach_prefix(3, (1,))  # an 0.8 s load
    assert kv.take_stall_s(0.5) == pytest.approx(0.3)


def _run(requests, num_blocks=1000, tiers=None):
    setup = ReplicaSetup(num_blocks, 16, 100_000, SchedulerConfig(), prefix_block_tokens=512,
                         kv_bytes_per_token=1000.0, make_kv_tiers=tiers)
    sim = Simulation(Workload.from_requests(requests), setup, 1, RoundRobinRouter(), LinearStepModel())
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out, sim


def test_a_cached_prefix_skips_its_prefill():
    # The first request (1,200 tokens: blocks a, b full, c partial) caches a and b once its prompt is
    # computed; the second shares them (1,024 tokens) and computes the other 176 only.
    first = Request(0.0, 1200, 2, prefix_block_ids=(10, 11, 12))
    second = Request(5.0, 1200, 2, prefix_block_ids=(10, 11, 99))
    out, _ = _run([first, second])
    t = out.requests
    assert t.cached_tokens.tolist() == [0, 1024]
    assert t.first_token_s[0] == 0.01 + 0.001 * 1200
    assert t.first_token_s[1] == 5.0 + (0.01 + 0.001 * 176)


def test_a_prompt_still_computing_is_not_a_hit():
    # Both are admitted into the first step, before either prompt is computed: no hit. A third,
    # arriving while they compute, is admitted when that step ends (0.01 + 2.4 s) and hits.
    same = dict(prefix_block_ids=(10, 11, 12))
    out, _ = _run([Request(0.0, 1200, 2, **same), Request(0.0, 1200, 2, **same), Request(0.5, 1200, 2, **same)])
    assert out.requests.cached_tokens.tolist() == [0, 0, 1199]


def test_a_whole_prompt_in_cache_still_computes_one_token():
    out, _ = _run([Request(0.0, 1024, 2, prefix_block_ids=(1, 2)), Request(5.0, 1024, 2, prefix_block_ids=(1, 2))])
    assert out.requests.cached_tokens.tolist() == [0, 1023]
    assert out.requests.first_token_s[1] == 5.0 + (0.01 + 0.001 * 1)


def test_a_load_from_a_lower_tier_delays_the_admitting_step():
    """The first prompt's two entries (512 tokens each, 512 KB at 1000 B/token) are pushed to the
    CPU tier by a 1,024-token request; the third request loads them back: 2 x (1 ms + 0.512 MB
    / 1 GB/s) before its 1-token step."""
    tiers = lambda: [KvTier("cpu", 1e9, 1e9, 1e-3, 1000.0)]  # noqa: E731
    requests = [Request(0.0, 1024, 2, prefix_block_ids=(1, 2)), Request(5.0, 1024, 2, prefix_block_ids=(7, 8)),
                Request(10.0, 1024, 2, prefix_block_ids=(1, 2))]
    out, sim = _run(requests, num_blocks=64 + 2, tiers=tiers)
    load = 2 * (1e-3 + 512 * 1000.0 / 1e9)
    assert out.requests.cached_tokens.tolist() == [0, 0, 1023]
    assert out.requests.first_token_s[2] == pytest.approx(10.0 + (0.01 + 0.001 * 1) + load)
    assert sim.replicas[0].scheduler.kv.stall_time_s == pytest.approx(load)


def test_prefix_aware_routing_needs_prefix_caching():
    with pytest.raises(ConfigError, match="needs cluster.prefix_caching: true"):
        servesim.simulate({"router": {"policy": "prefix_aware"}, "cluster": {"prefix_caching": False}})
    # vLLM's engine caches prefixes unless told not to; the plain harness does not.
    with pytest.raises(ConfigError, match="needs cluster.prefix_caching: true"):
        servesim.simulate({"router": {"policy": "prefix_aware"}, "cluster": {"engine": "pytorch"}})


def test_tiers_need_prefix_caching_and_a_dividing_block_size():
    with pytest.raises(ConfigError, match="set prefix_caching: true"):
        servesim.simulate({"cluster": {"prefix_caching": False,
                                       "kv_tiers": [{"name": "cpu", "capacity_gb": 10, "read_gb_per_s": 25}]}})
    with pytest.raises(ConfigError, match="block_size = 24 must divide"):
        servesim.simulate({"workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 5},
                           "cluster": {"model": "qwen2.5-7b", "prefix_caching": True, "block_size": 24}})


def _trace_share_seen_earlier(rows):
    seen, hits, total = set(), 0, 0
    for ids in rows:
        hits += sum(1 for h in ids if h in seen)
        total += len(ids)
        seen.update(ids)
    return hits / total


def test_unlimited_cache_hits_exactly_the_blocks_seen_earlier():
    """The first 1,500 Mooncake conversation requests that fit Qwen2.5-7B's 32K context, spaced 30 s
    apart so that each prompt is computed before the next arrives, on one replica whose cache keeps
    everything: the block hit rate is the trace's share of blocks seen earlier, counted here by hand."""
    rows = [row for row in map(json.loads, MOONCAKE.open()) if row["input_length"] < 32768][:1500]
    workload = Workload.from_arrays(
        np.arange(len(rows)) * 30.0, [r["input_length"] for r in rows], [1] * len(rows),
        prefix_block_ids=[tuple(r["hash_ids"]) for r in rows], prefix_block_size=512,
    )
    config = {"cluster": {"model": "qwen2.5-7b", "prefix_caching": True, "prefix_cache_unlimited": True}}
    s = servesim.simulate(config, workload=workload).summary
    assert s["prefix_cache_hit_rate"] == pytest.approx(_trace_share_seen_earlier(r["hash_ids"] for r in rows), abs=1e-12)
    assert s["kv_cache"]["tiers"]["unlimited"]["hit_blocks"] > 0


def test_the_summary_reports_hits_per_tier():
    s = servesim.simulate({
        "workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 60},
        "cluster": {"model": "qwen2.5-7b", "prefix_caching": True},
    }).summary
    assert s["prefix_cached_tokens"] > 0 and 0 < s["prefix_hit_rate"] < 1
    kv = s["kv_cache"]
    assert kv["tiers"]["gpu"]["hit_blocks"] == round(s["prefix_cache_hit_rate"] * kv["looked_up_blocks"])


def test_a_shared_remote_tier_serves_every_replica():
    """Two replicas, round robin, small GPU caches: with one store both reach, blocks one replica
    evicted can be loaded by the other; two private stores of half the size each cannot serve the
    other replica's blocks, and find fewer."""
    remote = dict(name="remote", capacity_gb=100, read_gb_per_s=10, shared=True)
    scenario = {
        "workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 400},
        "cluster": {"model": "qwen2.5-7b", "num_replicas": 2, "prefix_caching": True, "gpu_memory_utilization": 0.3,
                    "kv_tiers": [remote]},
        "router": {"policy": "round_robin"},
    }
    shared = servesim.simulate(scenario).summary
    scenario["cluster"]["kv_tiers"] = [{**remote, "shared": False, "capacity_gb": 50}]
    private = servesim.simulate(scenario).summary
    assert shared["kv_cache"]["tiers"]["remote"]["hit_blocks"] > private["kv_cache"]["tiers"]["remote"]["hit_blocks"]
    assert shared["prefix_cache_hit_rate"] > private["prefix_cache_hit_rate"]


def test_the_cache_books_over_time(tmp_path):
    result = servesim.simulate({
        "workload": {"kind": "trace", "path": "builtin:mooncake-conv", "max_requests": 200},
        "cluster": {"model": "qwen2.5-7b", "num_replicas": 2, "prefix_caching": True, "gpu_memory_utilization": 0.3,
                    "kv_tiers": [{"name": "cpu", "capacity_gb": 20, "read_gb_per_s": 25}]},
    })
    table = result.kv_cache_series.to_arrow().to_pydict()
    assert set(table) == {"time_s", "replica", "looked_up_blocks", "hit_blocks", "bytes_loaded", "load_stall_s"}
    for replica in (0, 1):
        rows = [i for i, r in enumerate(table["replica"]) if r == replica]
        for name in ("looked_up_blocks", "hit_blocks", "bytes_loaded", "load_stall_s"):
            values = [table[name][i] for i in rows]
            assert values == sorted(values), name  # cumulative books never go down
    books = result.summary["kv_cache"]
    last = {r: max(i for i, x in enumerate(table["replica"]) if x == r) for r in (0, 1)}
    assert sum(table["looked_up_blocks"][i] for i in last.values()) <= books["looked_up_blocks"]
    assert sum(table["bytes_loaded"][i] for i in last.values()) <= books["tiers"]["cpu"]["bytes_loaded"]
    paths = result.write(tmp_path)
    assert paths["kvcache_timeseries"].exists()
