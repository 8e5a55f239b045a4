"""Block pool and per-request allocation, with exact block ids (11 blocks of 16 tokens)."""

from servesim.kvcache.block_pool import BlockPool
from servesim.kvcache.manager import KVCacheManager


def test_pool_hands_out_ids_in_order_and_reuses_last_freed_first():
    pool = BlockPool(11)
    assert pool.allocate(3) == [0, 1, 2]
    assert pool.allocate(2) == [3, 4]
    pool.release([0, 1, 2])
    assert pool.num_free == 9
    assert pool.allocate(1) == [2]


def test_pool_refuses_without_taking_anything():
    pool = BlockPool(4)
    assert pool.allocate(5) is None
    assert pool.num_free == 4
    assert pool.allocate(0) == []


def test_allocate_slots_rounds_up_to_blocks_and_grows_only():
    kv = KVCacheManager(num_blocks=11, block_size=16)
    assert kv.allocate_slots(7, 17)  # 2 blocks
    assert kv.num_blocks_of(7) == 2 and kv.num_free_blocks == 9
    assert kv.allocate_slots(7, 32)  # still 2 blocks
    assert kv.num_blocks_of(7) == 2
    assert kv.allocate_slots(7, 33)  # 3rd block
    assert kv.num_blocks_of(7) == 3
    assert kv.allocate_slots(7, 5)  # never shrinks
    assert kv.num_blocks_of(7) == 3


def test_allocate_slots_fails_atomically_when_pool_is_short():
    kv = KVCacheManager(num_blocks=11, block_size=16)
    assert kv.allocate_slots(1, 16 * 10)
    assert not kv.allocate_slots(2, 16 * 2)
    assert kv.num_blocks_of(2) == 0 and kv.num_free_blocks == 1


def test_free_returns_every_block_tail_first():
    kv = KVCacheManager(num_blocks=11, block_size=16)
    kv.allocate_slots(1, 48)  # blocks 0,1,2
    kv.free(1)
    assert kv.num_free_blocks == 11 and kv.num_requests_holding() == 0
    # The tail block (2) is reused first, the head block (0) last.
    assert kv.pool.allocate(3) == [2, 1, 0]
    kv.free(99)  # freeing a request with no blocks is a no-op
