"""Lower tiers of the KV cache: CPU DRAM, local SSD, a remote store.

A tier holds prefix-cache entries that the GPU evicted (``put``), least
recently used first out when it is full (the evicted entry goes on to the
next tier down, or is dropped).  A GPU lookup that finds an entry here
takes it back up (``take``: exclusive caching) and pays a load.

How long a load takes (``load_s``) depends on the tier's I/O model:

* ``block``: CPU-driven reads of one KV block each (LMCache-like, with GPU
  Direct Storage for an SSD): ``latency + blocks x per_io_s + bytes /
  bandwidth``; the per-I/O cost dominates many small reads;
* ``bulk``: GPU-driven bulk I/O of one object per entry (Tutti):
  ``latency + entries x per_io_s + bytes / bandwidth``.

With ``overlap`` the load runs alongside the step's compute (layer by layer,
or Tutti's slack-aware scheduling) and stalls the step only by what it
takes beyond it; otherwise the step waits for the whole load.
"""

from __future__ import annotations

from collections import OrderedDict


class KvTier:
    """One tier below the GPU: an LRU store of entries (hash -> tokens) with a byte capacity."""

    __slots__ = (
        "name", "capacity_bytes", "bytes_per_s", "latency_s", "per_io_s", "bulk", "overlap", "bytes_per_token",
        "_entries", "used_bytes", "num_loads", "bytes_loaded", "bytes_stored", "num_evicted",
    )

    def __init__(
        self,
        name: str,
        capacity_bytes: float,
        bytes_per_s: float,
        latency_s: float,
        bytes_per_token: float,
        *,
        per_io_s: float = 0.0,
        bulk: bool = True,
        overlap: bool = False,
    ) -> None:
        if not capacity_bytes > 0 or not bytes_per_s > 0:
            raise ValueError(f"tier {name!r} needs capacity and bandwidth > 0, got {capacity_bytes!r} and {bytes_per_s!r}")
        self.name = name
        self.capacity_bytes = capacity_bytes
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self.per_io_s = per_io_s
        self.bulk = bulk
        self.overlap = overlap
        self.bytes_per_token = bytes_per_token
        self._entries: OrderedDict[int, int] = OrderedDict()  # hash -> tokens, least recently used first
        self.used_bytes = 0.0
        self.num_loads = 0  # entries taken up to the GPU
        self.bytes_loaded = 0.0  # up to the GPU
        self.bytes_stored = 0.0  # down from the tier above
        self.num_evicted = 0

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, block_hash: int, tokens: int) -> list[tuple[int, int]]:
        """Store an entry (most recently used); returns the entries pushed out to make room."""
        size = tokens * self.bytes_per_token
        if size > self.capacity_bytes:
            return [(block_hash, tokens)]  # it cannot fit at all: straight through
        self._entries[block_hash] = tokens
        self.used_bytes += size
        self.bytes_stored += size
        out = []
        while self.used_bytes > self.capacity_bytes:
            old, old_tokens = self._entries.popitem(last=False)
            self.used_bytes -= old_tokens * self.bytes_per_token
            self.num_evicted += 1
            out.append((old, old_tokens))
        return out

    def take(self, block_hash: int) -> int:
        """Remove an entry to load it up; returns its tokens."""
        tokens = self._entries.pop(block_hash)
        size = tokens * self.bytes_per_token
        self.used_bytes -= size
        self.bytes_loaded += size
        self.num_loads += 1
        return tokens

    def load_s(self, num_entries: int, num_kv_blocks: int, num_bytes: float) -> float:
        """Seconds to load ``num_entries`` entries of ``num_kv_blocks`` KV blocks and ``num_bytes`` bytes."""
        if num_entries == 0:
            return 0.0
        ios = num_entries if self.bulk else num_kv_blocks
        return self.latency_s + ios * self.per_io_s + num_bytes / self.bytes_per_s
