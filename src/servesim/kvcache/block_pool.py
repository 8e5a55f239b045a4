"""The pool of physical KV-cache blocks of one replica.

Blocks are identified by integers ``0 .. num_blocks-1``.  The free list is a
Python list used as a stack: allocation pops from the end and freeing pushes
back, so the most recently freed block is reused first (good locality, and a
deterministic, testable order).  The pool knows nothing about requests.
"""

from __future__ import annotations


class BlockPool:
    """Fixed set of KV blocks with O(1) bulk allocate/free."""

    __slots__ = ("num_blocks", "_free")

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        # Reversed so that the first allocations hand out 0, 1, 2, ...
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))

    @property
    def free_list(self) -> list[int]:
        """The free list itself (a stack; the last entry is handed out next).

        For ``KVCacheManager``'s one-block fast path only; everything else
        goes through ``allocate`` and ``release``.
        """
        return self._free

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    def allocate(self, count: int) -> list[int] | None:
        """Take ``count`` blocks, or return None (taking nothing) if too few are free."""
        free = self._free
        if count > len(free):
            return None
        if count == 0:
            return []
        taken = free[-count:]
        del free[-count:]
        taken.reverse()
        return taken

    def take_one(self) -> int | None:
        """Take a single block (the common decode case), or None if none is free."""
        free = self._free
        return free.pop() if free else None

    def release(self, blocks: list[int]) -> None:
        """Return blocks to the pool; the last block of ``blocks`` is reused first."""
        self._free.extend(blocks)

    def grow(self, count: int) -> None:
        """Add ``count`` new free blocks (the replica gained GPU memory: elastic scaling).
        They go to the bottom of the stack: blocks already in circulation are reused first."""
        new = list(range(self.num_blocks + count - 1, self.num_blocks - 1, -1))
        self._free[0:0] = new
        self.num_blocks += count

    def shrink(self, count: int) -> bool:
        """Remove ``count`` free blocks (the replica gave GPU memory back); False, changing
        nothing, when fewer are free.  Block ids stay opaque, so any free ones may go."""
        if count > len(self._free):
            return False
        del self._free[0:count]
        self.num_blocks -= count
        return True
