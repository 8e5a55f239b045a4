"""KV-cache memory: the block pool and per-request block tables.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "BlockPool": "servesim.kvcache.block_pool",
        "KVCacheManager": "servesim.kvcache.manager",
    },
)
