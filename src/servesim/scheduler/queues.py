"""Waiting-queue policies and their matching preemption-victim rules.

A policy orders the waiting queue and, when KV blocks run out, names which
running sequence gives its blocks back.  Policies are chosen by name from
``QUEUE_POLICIES``; adding one means adding a class here and a test.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Protocol

from servesim.scheduler.sequence import Sequence


class WaitingQueue(Protocol):
    """The waiting queue of one replica."""

    def push(self, seq: Sequence) -> None:
        """Add a newly arrived sequence."""

    def push_preempted(self, seq: Sequence) -> None:
        """Put back a sequence that was preempted (it should run again soon)."""

    def peek(self) -> Sequence:
        """The sequence that would be admitted next (queue must be non-empty)."""

    def pop(self) -> Sequence:
        """Remove and return ``peek()``."""

    def __len__(self) -> int: ...

    def __iter__(self):
        """The waiting sequences in admission order."""

    def victim_index(self, running: list[Sequence]) -> int:
        """Index in ``running`` of the sequence to preempt when blocks run out."""


class FcfsQueue:
    """First come, first served; preempted sequences go back to the front.

    Victim: the most recently admitted running sequence (the list's tail).
    """

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[Sequence] = deque()

    def push(self, seq: Sequence) -> None:
        self._queue.append(seq)

    def push_preempted(self, seq: Sequence) -> None:
        self._queue.appendleft(seq)

    def peek(self) -> Sequence:
        return self._queue[0]

    def pop(self) -> Sequence:
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self):
        return iter(self._queue)

    def victim_index(self, running: list[Sequence]) -> int:
        return len(running) - 1


class PriorityQueue:
    """Smallest ``priority`` first, then earliest arrival, then request id.

    Victim: the running sequence with the largest (priority, arrival, id),
    i.e. the least urgent and most recent.
    """

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, Sequence]] = []

    def push(self, seq: Sequence) -> None:
        heapq.heappush(self._heap, (seq.priority, seq.arrival_s, seq.rid, seq))

    # A preempted sequence keeps its place by its own key.
    push_preempted = push

    def peek(self) -> Sequence:
        return self._heap[0][3]

    def pop(self) -> Sequence:
        return heapq.heappop(self._heap)[3]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self):
        return (entry[3] for entry in sorted(self._heap, key=lambda e: e[:3]))

    def victim_index(self, running: list[Sequence]) -> int:
        best = 0
        best_key = (running[0].priority, running[0].arrival_s, running[0].rid)
        for i in range(1, len(running)):
            s = running[i]
            key = (s.priority, s.arrival_s, s.rid)
            if key > best_key:
                best, best_key = i, key
        return best


QUEUE_POLICIES: dict[str, type] = {"fcfs": FcfsQueue, "priority": PriorityQueue}
