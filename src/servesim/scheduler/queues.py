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


class LengthAwareQueue:
    """LAPS's dual queue on one instance: short prompts and long prompts wait apart.

    Short prompts (at most ``threshold_tokens`` long) go first, so
    a short prompt never waits behind a long prefill; a long prompt goes before
    any short one that arrived more than ``max_wait_s`` after it, which bounds
    its wait.  Preempted sequences go back to the front of their queue.
    Victim: the most recently admitted running sequence, as with FCFS.
    """

    __slots__ = ("threshold_tokens", "max_wait_s", "_short", "_long")

    def __init__(self, threshold_tokens: int = 256, max_wait_s: float = 1.0) -> None:
        self.threshold_tokens = threshold_tokens
        self.max_wait_s = max_wait_s
        self._short: deque[Sequence] = deque()
        self._long: deque[Sequence] = deque()

    def _queue_of(self, seq: Sequence) -> deque[Sequence]:
        return self._short if seq.num_prompt <= self.threshold_tokens else self._long

    def push(self, seq: Sequence) -> None:
        self._queue_of(seq).append(seq)

    def push_preempted(self, seq: Sequence) -> None:
        self._queue_of(seq).appendleft(seq)

    def _next_queue(self) -> deque[Sequence]:
        shorts, longs = self._short, self._long
        if not shorts:
            return longs
        if longs and longs[0].arrival_s + self.max_wait_s < shorts[0].arrival_s:
            return longs
        return shorts

    def peek(self) -> Sequence:
        return self._next_queue()[0]

    def pop(self) -> Sequence:
        return self._next_queue().popleft()

    def __len__(self) -> int:
        return len(self._short) + len(self._long)

    def __iter__(self):
        # Admission order as long as nothing new arrives.
        shorts, longs = list(self._short), list(self._long)
        i = j = 0
        while i < len(shorts) or j < len(longs):
            if i == len(shorts) or (j < len(longs) and longs[j].arrival_s + self.max_wait_s < shorts[i].arrival_s):
                yield longs[j]
                j += 1
            else:
                yield shorts[i]
                i += 1

    def victim_index(self, running: list[Sequence]) -> int:
        return len(running) - 1


QUEUE_POLICIES: dict[str, type] = {"fcfs": FcfsQueue, "priority": PriorityQueue, "laps": LengthAwareQueue}


def make_queue(config) -> WaitingQueue:  # noqa: ANN001 - a SchedulerConfig
    """The waiting queue ``config.policy`` names, with its parameters."""
    if config.policy == "laps":
        return LengthAwareQueue(config.laps_threshold_tokens, config.laps_max_wait_s)
    return QUEUE_POLICIES[config.policy]()
