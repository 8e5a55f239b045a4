"""Multi-LoRA (S-LoRA): adapter sizes, a unified pool shared with KV, fixed partitions, loads."""

from __future__ import annotations

import pytest

import servesim
from servesim.config import validate_config
from servesim.deployment import build_deployment
from servesim.errors import ConfigError
from servesim.kvcache.adapters import PartitionedAdapters, UnifiedAdapters, adapter_bytes
from servesim.kvcache.prefix_cache import PrefixCachingKVManager
from servesim.perf import Catalog

LLAMA_8B = Catalog.default().model("llama-3-8b")


def test_adapter_size_by_hand():
    # q 4096->4096, k and v 4096->1024, o 4096->4096: 26,624 weights per rank and layer, 32 layers, bf16.
    assert adapter_bytes(LLAMA_8B, 16) == 16 * 26624 * 32 * 2
    assert adapter_bytes(LLAMA_8B, 16, tensor_parallel=2) == 16 * 26624 * 32 * 2 / 2


def test_a_partition_holds_what_fits_and_evicts_idle_adapters_first():
    store = PartitionedAdapters(capacity_bytes=300.0, sizes=[100.0, 100.0, 200.0], pcie_bytes_per_s=1000.0)
    assert store.acquire(1, 0) and store.acquire(2, 1)
    assert store.take_stall_s() == pytest.approx(0.2)  # two 100-byte loads at 1 kB/s
    assert not store.acquire(3, 2)  # 200 more bytes with both in use: no room
    store.release(1)  # adapter 0 idle
    assert store.acquire(3, 2)  # evicts adapter 0
    assert store.resident() == 2 and store.num_loads == 3
    assert store.acquire(4, 1) and store.take_stall_s() == pytest.approx(0.2)  # 1 was resident: only 2's load


def test_a_unified_pool_shares_room_with_the_kv_cache():
    kv = PrefixCachingKVManager(num_blocks=10, block_size=4, prefix_block_tokens=4, bytes_per_token=10.0)
    adapters = UnifiedAdapters(kv, sizes=[80.0, 120.0], pcie_bytes_per_s=100.0)  # 2 and 3 blocks of 40 bytes
    assert adapters.acquire(1, 0) and adapters.acquire(2, 1)
    assert adapters.take_stall_s() == pytest.approx(2.0)
    assert kv.num_used_blocks == 5 and kv.audit([1, 2]) == ""
    assert kv.allocate_slots(1, 20)  # 5 blocks of KV: the pool is full
    assert adapters.acquire(3, 0)  # adapter 0 is resident: a second user shares it, no room needed
    kv.free(2)  # request 2 ends: adapter 1 goes idle (3 blocks free to take)
    assert kv.num_free_blocks == 3
    assert kv.allocate_slots(4, 12)  # 3 blocks of KV evict the idle adapter
    assert adapters.resident() == 1 and kv.audit([1, 3, 4]) == ""


def test_a_partition_is_taken_from_the_kv_cache():
    def blocks(**lora):
        cluster = {"model": "llama-3-8b", "hardware": "l40s"}
        if lora:
            cluster["lora"] = lora
        return build_deployment(validate_config({"cluster": cluster})).memory.num_kv_blocks

    per_block = 16 * 131072
    assert blocks() - blocks(memory="partition", partition_gb=4) == pytest.approx(4e9 / per_block, abs=1)
    assert blocks(memory="unified") == blocks()


def test_lora_config_checks():
    with pytest.raises(ConfigError, match="set workload.lora"):
        servesim.simulate({"cluster": {"lora": {}}})
    with pytest.raises(ConfigError, match="lora cannot be combined"):
        servesim.simulate({"cluster": {"lora": {}, "prefix_caching": True}})


def test_many_adapters_fit_a_unified_pool_better_than_a_small_partition():
    def ttft(memory, **extra):
        return servesim.simulate({
            "workload": {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "poisson", "rate_rps": 5},
                         "prompt_tokens": {"dist": "fixed", "value": 500}, "output_tokens": {"dist": "fixed", "value": 100},
                         "lora": {"num_adapters": 500, "ranks": [64]}},
            "cluster": {"hardware": "l40s", "lora": {"memory": memory, **extra}},
        }).summary["ttft_s"]["mean"]

    assert ttft("partition", partition_gb=1) > 3 * ttft("unified")


class _HoldsAdapters:
    def __init__(self, held):
        self.held = set(held)

    def has_adapter(self, adapter):
        return adapter in self.held


def test_adapter_affinity_routes_to_a_replica_holding_the_adapter_within_the_load_slack():
    from servesim.cluster.routers import AdapterAffinityRouter
    from servesim.cluster.views import ReplicaSnapshot
    from servesim.scheduler.sequence import Sequence

    views = [ReplicaSnapshot(0, 1, 0.0, _HoldsAdapters([])), ReplicaSnapshot(1, 3, 0.0, _HoldsAdapters([7])),
             ReplicaSnapshot(2, 9, 0.0, _HoldsAdapters([8]))]
    request = Sequence(0, 0.0, 10, 5)
    request.adapter = 7
    assert AdapterAffinityRouter(load_slack=4).route(request, views) == 1  # holds 7, 2 more than the least loaded
    request.adapter = 8
    assert AdapterAffinityRouter(load_slack=4).route(request, views) == 0  # 8's holder is too busy: least loaded
    request.adapter = -1
    assert AdapterAffinityRouter(load_slack=4).route(request, views) == 0


def test_the_summary_counts_adapter_loads():
    s = servesim.simulate({
        "workload": {"kind": "synthetic", "num_requests": 50, "arrival": {"process": "poisson", "rate_rps": 2},
                     "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 5},
                     "lora": {"num_adapters": 1, "ranks": [16]}},
        "cluster": {"lora": {"memory": "unified", "pcie_gb_per_s": 25}},
    }).summary
    # One adapter, always wanted, never evicted: loaded once, 27 MB at 25 GB/s.
    assert s["lora"]["loads"] == 1 and s["lora"]["resident_at_end"] == 1
    assert s["lora"]["bytes_loaded"] == adapter_bytes(LLAMA_8B, 16)
    assert s["lora"]["load_stall_s"] == pytest.approx(adapter_bytes(LLAMA_8B, 16) / 25e9)
