"""Running maximum over the tail of an append-only series.

``push(index, value)`` appends with strictly increasing ``index``;
``max_from(q)`` returns the largest value pushed at an index >= ``q``.  A
monotonic stack keeps only values not dominated by a later, larger one, so
both operations are O(log n) at worst and O(1) amortised for pushes.
"""

from __future__ import annotations

from bisect import bisect_left


class SuffixMax:
    __slots__ = ("_index", "_value")

    def __init__(self) -> None:
        self._index: list[int] = []
        self._value: list[float] = []

    def push(self, index: int, value: float) -> None:
        """Append ``value`` at ``index`` (greater than every earlier index)."""
        idx, val = self._index, self._value
        while val and val[-1] <= value:
            idx.pop()
            val.pop()
        idx.append(index)
        val.append(value)

    def max_from(self, index: int) -> float | None:
        """Largest value pushed at an index >= ``index``; None if there is none."""
        i = bisect_left(self._index, index)
        return self._value[i] if i < len(self._value) else None

    def forget_before(self, index: int) -> None:
        """Drop entries below ``index`` (no later query will start before it)."""
        i = bisect_left(self._index, index)
        if i:
            del self._index[:i], self._value[:i]

    def __len__(self) -> int:
        return len(self._index)
