"""Per-request KV-cache bookkeeping on top of a ``BlockPool``.

The manager maps each request to the list of blocks that hold its cached
tokens.  It answers one question for the scheduler: "can this request have
room for ``n`` computed tokens?"  (``allocate_slots``), and takes blocks back
when a request finishes or is preempted (``free``).  Block ids stay opaque to
the scheduler.
"""

from __future__ import annotations

from servesim.kvcache.block_pool import BlockPool


class KVCacheManager:
    """Paged KV allocation: ``ceil(tokens / block_size)`` blocks per request."""

    __slots__ = ("block_size", "pool", "_free", "_blocks")

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.pool = BlockPool(num_blocks)
        self._free = self.pool.free_list  # shared with the pool, for append_block's fast path
        self._blocks: dict[int, list[int]] = {}

    @property
    def num_blocks(self) -> int:
        return self.pool.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free

    @property
    def num_used_blocks(self) -> int:
        return self.pool.num_used

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    def num_blocks_of(self, request_id: int) -> int:
        """Blocks currently held by a request (0 if none)."""
        held = self._blocks.get(request_id)
        return 0 if held is None else len(held)

    def allocate_slots(self, request_id: int, num_tokens: int) -> bool:
        """Grow a request's blocks to hold ``num_tokens`` tokens in total.

        Returns False, changing nothing, when the pool has too few free
        blocks.  Never shrinks a request's allocation.
        """
        held = self._blocks.get(request_id)
        if held is not None:
            have = len(held)
            # Fast path (most decode steps): the tokens fit in the blocks held.
            if num_tokens <= have * self.block_size:
                return True
        else:
            have = 0
        need = -(-num_tokens // self.block_size) - have
        if need <= 0:
            return True
        new = self.pool.allocate(need)
        if new is None:
            return False
        if held is None:
            self._blocks[request_id] = new
        else:
            held.extend(new)
        return True

    def append_block(self, request_id: int) -> bool:
        """Give a request that holds blocks one more; False (changing nothing) if none is free."""
        free = self._free
        if not free:
            return False
        # The pool's take_one, inlined: this runs once per block boundary of
        # every decoding sequence.
        self._blocks[request_id].append(free.pop())
        return True

    def free(self, request_id: int) -> None:
        """Return all of a request's blocks to the pool (no-op if it holds none)."""
        held = self._blocks.pop(request_id, None)
        if held:
            # The pool is a stack, so pushing in order makes the request's tail
            # block the first to be reused and its first block the last: the
            # order vLLM uses (a prefix's head blocks are the most valuable).
            self.pool.release(held)

    def blocks_released_by(self, request_ids: list[int]) -> int:
        """Blocks that would stop being in use if these requests ended now."""
        total = 0
        for rid in request_ids:
            total += self.num_blocks_of(rid)
        return total

    def num_requests_holding(self) -> int:
        """How many requests hold at least one block."""
        return len(self._blocks)
