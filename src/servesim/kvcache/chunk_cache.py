"""A RAG chunk cache (Cache-Craft): KV of retrieved chunks, reusable at any position.

A RAG prompt is a few retrieved chunks (in the retriever's order) and a
question.  Prefix caching reuses a chunk's KV only where everything before
it matches; a chunk cache keeps each chunk's KV on its own and reuses it
wherever the chunk appears, recomputing a ``recompute_fraction`` of its
tokens to repair the attention to what now precedes it (Cache-Craft,
SEED_CLAIMS #12: a fraction of about 10-30% is an assumption).

The cache holds chunks (id -> tokens) up to ``capacity_bytes`` of KV, least
recently used out first.  A lookup at admission (``reuse``) counts each
cached chunk of the prompt as computed but for its recomputed share, and
prices loading it (``bytes / bandwidth``) into the admitting step when the
cache lives off the GPU; a computed prompt files its chunks (``insert``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence


class ChunkCache:
    """LRU chunk-KV store of one replica."""

    __slots__ = ("capacity_bytes", "bytes_per_token", "chunk_tokens", "recompute_fraction", "bytes_per_s",
                 "_chunks", "used_bytes", "_stall_s", "num_lookups", "looked_up_chunks", "hit_chunks",
                 "reused_tokens", "stall_time_s")

    def __init__(self, capacity_bytes: float, bytes_per_token: float, chunk_tokens: int, recompute_fraction: float,
                 bytes_per_s: float = math.inf) -> None:
        if not capacity_bytes > 0 or chunk_tokens < 1 or not 0.0 <= recompute_fraction <= 1.0:
            raise ValueError("chunk cache needs capacity > 0, chunk_tokens >= 1 and recompute_fraction in [0, 1]")
        self.capacity_bytes = capacity_bytes
        self.bytes_per_token = bytes_per_token
        self.chunk_tokens = chunk_tokens
        self.recompute_fraction = recompute_fraction
        self.bytes_per_s = bytes_per_s
        self._chunks: OrderedDict[int, None] = OrderedDict()
        self.used_bytes = 0.0
        self._stall_s = 0.0
        self.num_lookups = 0
        self.looked_up_chunks = 0
        self.hit_chunks = 0
        self.reused_tokens = 0
        self.stall_time_s = 0.0

    def __contains__(self, chunk: int) -> bool:
        return chunk in self._chunks

    def reusable_tokens(self, chunks: Sequence[int]) -> int:
        """Tokens of ``chunks`` whose KV the cache holds, less what must be recomputed (changes nothing)."""
        keep = self.chunk_tokens - math.ceil(self.recompute_fraction * self.chunk_tokens)
        return keep * sum(1 for c in chunks if c in self._chunks)

    def reuse(self, chunks: Sequence[int], count: bool, limit: int | None = None) -> int:
        """Tokens a prompt built from ``chunks`` need not compute; marks the hits recently used and
        prices their load.  ``count``: the request's first admission (books).  ``limit``: the most
        the request skips (its prompt less the token it must compute); the books count what it skips."""
        keep = self.chunk_tokens - math.ceil(self.recompute_fraction * self.chunk_tokens)
        hits = 0
        for c in chunks:
            if c in self._chunks:
                self._chunks.move_to_end(c)
                hits += 1
        if math.isfinite(self.bytes_per_s):
            self._stall_s += hits * keep * self.bytes_per_token / self.bytes_per_s
        if count:
            self.num_lookups += 1
            self.looked_up_chunks += len(chunks)
            self.hit_chunks += hits
            self.reused_tokens += hits * keep if limit is None else min(hits * keep, limit)
        return hits * keep

    def insert(self, chunks: Sequence[int]) -> None:
        """File a computed prompt's chunks, evicting the least recently used beyond capacity."""
        size = self.chunk_tokens * self.bytes_per_token
        for c in chunks:
            if c in self._chunks:
                self._chunks.move_to_end(c)
                continue
            self._chunks[c] = None
            self.used_bytes += size
        while self.used_bytes > self.capacity_bytes and self._chunks:
            self._chunks.popitem(last=False)
            self.used_bytes -= size

    def take_stall_s(self) -> float:
        """Load time the next step waits for (the chunks its admissions reused)."""
        stall, self._stall_s = self._stall_s, 0.0
        self.stall_time_s += stall
        return stall
