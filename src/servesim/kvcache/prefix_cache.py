"""A replica's prefix cache, at the granularity of a trace's prefix blocks.

Traces such as Mooncake's give each prompt as a list of block hashes, one
per ``block_tokens`` tokens, where equal hashes mean equal prefixes.  The
cache remembers the most recently used hashes a replica has computed (up to
``capacity_blocks``) and answers how many leading blocks of a new prompt it
already holds.

A minimal model (issue 5's prefix-aware routing; the full KV hierarchy is
issue 6's): a hit saves the prefill compute of the cached tokens, but the
request still takes its own KV blocks (no block sharing), and a prompt's
blocks count as cached from the moment the request is admitted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """Least-recently-used set of prefix-block hashes."""

    __slots__ = ("capacity_blocks", "block_tokens", "_blocks", "num_lookups", "num_hit_blocks")

    def __init__(self, capacity_blocks: int, block_tokens: int) -> None:
        if capacity_blocks < 1 or block_tokens < 1:
            raise ValueError(f"prefix cache needs capacity_blocks >= 1 and block_tokens >= 1, "
                             f"got {capacity_blocks} and {block_tokens}")
        self.capacity_blocks = capacity_blocks
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.num_lookups = 0
        self.num_hit_blocks = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def peek(self, block_ids: Sequence[int]) -> int:
        """Leading blocks of ``block_ids`` held now (changes nothing: what a router reads)."""
        held = self._blocks
        n = 0
        for block in block_ids:
            if block not in held:
                break
            n += 1
        return n

    def lookup(self, block_ids: Sequence[int]) -> int:
        """Leading blocks held, marking them most recently used."""
        n = self.peek(block_ids)
        for block in block_ids[:n]:
            self._blocks.move_to_end(block)
        self.num_lookups += 1
        self.num_hit_blocks += n
        return n

    def insert(self, block_ids: Sequence[int]) -> None:
        """Hold these blocks (most recently used), evicting the least recently used beyond capacity."""
        blocks = self._blocks
        for block in block_ids:
            if block in blocks:
                blocks.move_to_end(block)
            else:
                blocks[block] = None
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)
