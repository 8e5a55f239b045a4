"""A tiny, domain-free discrete-event kernel.

Events live in one binary heap keyed by ``(time_s, priority, seq)``:

* ``time_s``   simulated seconds; earlier first.
* ``priority`` a small integer chosen by the caller; at equal times the
  smaller priority runs first.  Domain code names its priority classes (see
  ``servesim.cluster.events``), so the order of simultaneous events is a
  documented decision, never an accident of creation order.
* ``seq``      a per-loop counter; among events with equal time and priority
  the one scheduled first runs first (FIFO).  It also keeps tuple comparison
  from ever reaching the callback.

Cancellation is lazy: ``cancel`` marks the token and the loop skips it when
it surfaces, which keeps ``schedule`` and ``cancel`` O(log n) / O(1).
Exceptions raised by callbacks propagate; the kernel never swallows them.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable

Callback = Callable[[float, Any], None]


class EventLoop:
    """Deterministic event loop: ``schedule`` callbacks, then ``run``."""

    __slots__ = ("_heap", "_seq", "_cancelled", "now", "num_events")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Callback, Any]] = []
        self._seq = 0
        self._cancelled: set[int] = set()
        self.now = 0.0
        self.num_events = 0

    def schedule(self, time_s: float, priority: int, callback: Callback, payload: Any = None) -> int:
        """Run ``callback(time_s, payload)`` at ``time_s``; returns a token for ``cancel``.

        ``time_s`` must not lie in the past: an event can only be scheduled at
        or after the current time.
        """
        if time_s < self.now:
            raise ValueError(f"cannot schedule an event at {time_s!r} s, before now ({self.now!r} s)")
        seq = self._seq
        self._seq = seq + 1
        heapq.heappush(self._heap, (time_s, priority, seq, callback, payload))
        return seq

    def cancel(self, token: int) -> None:
        """Drop a scheduled event; cancelling an event that already ran is a no-op."""
        self._cancelled.add(token)

    def peek(self) -> float | None:
        """Time of the next live event, or None when none is left."""
        heap = self._heap
        while heap and heap[0][2] in self._cancelled:
            self._cancelled.discard(heapq.heappop(heap)[2])
        return heap[0][0] if heap else None

    def run(self, until: float | None = None) -> None:
        """Process events in order until none is left or the next is after ``until``.

        Events at exactly ``until`` run.  When events remain past ``until`` the
        clock is advanced to ``until`` and they stay queued; when the heap
        drains first, the clock stays at the last event's time.
        """
        heap = self._heap
        cancelled = self._cancelled
        pop = heapq.heappop
        limit = float("inf") if until is None else until
        while heap:
            time_s = heap[0][0]
            if time_s > limit:
                self.now = limit
                return
            _, _, seq, callback, payload = pop(heap)
            if cancelled and seq in cancelled:
                cancelled.discard(seq)
                continue
            self.now = time_s
            self.num_events += 1
            callback(time_s, payload)
