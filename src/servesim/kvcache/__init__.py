"""KV-cache memory: the block pool and per-request block tables."""

from servesim.kvcache.block_pool import BlockPool
from servesim.kvcache.manager import KVCacheManager

__all__ = ["BlockPool", "KVCacheManager"]
