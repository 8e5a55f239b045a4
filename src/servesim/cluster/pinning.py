"""KV pinning across an agent's tool calls (Continuum).

When a call of an agent program finishes and the program will send another
after a tool runs, the finished call's prefix-cache entries (its prompt's
KV) are idle: under memory pressure other requests evict them, and the next
call recomputes its whole context.  Continuum pins them for a time to live
instead: pinned entries cannot be evicted, at the price of the memory they
hold while the tool runs.

``KvPinning.pin`` pins a finished call's entries on its replica for

* ``fixed``: ``ttl_s``;
* ``predicted``: ``scale`` x the mean of the tool gaps seen so far in this
  program (the run's mean for a program's first gap, ``ttl_s`` before any
  was seen), and not at all when that prediction exceeds ``max_ttl_s``
  (a long wait is cheaper to recompute than to hold memory for).

Either way a program is pinned only from its ``min_turns``-th finished
call on: the turn count so far stands in for how likely it is to go on.

The pin ends when its time to live runs out (the next call, if it came in
time, holds the entries itself by then).
"""

from __future__ import annotations

from servesim.cluster.events import ARRIVAL


class KvPinning:
    """Pins finished calls' KV entries for a time to live (see the module doc)."""

    def __init__(self, policy: str, ttl_s: float, scale: float = 1.0, max_ttl_s: float = float("inf"),
                 min_turns: int = 1) -> None:
        if policy not in ("fixed", "predicted"):
            raise ValueError(f"pinning policy must be 'fixed' or 'predicted', got {policy!r}")
        self.policy = policy
        self.ttl_s = ttl_s
        self.scale = scale
        self.max_ttl_s = max_ttl_s
        self.min_turns = min_turns
        self._turns: dict[object, int] = {}  # program -> calls finished so far
        self._gaps: dict[object, tuple[float, int]] = {}  # program -> (sum of its gaps, count)
        self._all = (0.0, 0)
        self._next_id = -1
        self.num_pins = 0
        self.pinned_block_seconds = 0.0  # prefix blocks x seconds held

    def observe(self, program: object, gap_s: float) -> None:
        """A program's call was sent ``gap_s`` after the one before it finished."""
        total, n = self._gaps.get(program, (0.0, 0))
        self._gaps[program] = (total + gap_s, n + 1)
        self._all = (self._all[0] + gap_s, self._all[1] + 1)

    def ttl_for(self, program: object) -> float:
        """How long to pin a call of ``program`` that just finished (0: do not pin)."""
        if self.policy == "fixed":
            return self.ttl_s
        total, n = self._gaps.get(program, self._all)
        predicted = total / n if n else self.ttl_s
        return 0.0 if predicted > self.max_ttl_s else self.scale * predicted

    def pin(self, seq, replica, now: float, loop) -> None:
        """Pin ``seq``'s prompt entries on ``replica`` (its prefix cache) for the program's TTL."""
        turns = self._turns.get(seq.session, 0) + 1
        self._turns[seq.session] = turns
        cache = replica.scheduler.prefix_cache
        if cache is None or not seq.prefix or turns < self.min_turns:
            return  # (a program that has made few calls yet is less likely to come back soon)
        ttl = self.ttl_for(seq.session)
        if ttl <= 0.0:
            return
        pin_id = self._next_id
        self._next_id -= 1
        held = cache.pin(pin_id, seq.prefix)
        if held:
            self.num_pins += 1
            self.pinned_block_seconds += held * ttl
            loop.schedule(now + ttl, ARRIVAL, self._unpin, (replica, pin_id))

    @staticmethod
    def _unpin(now: float, payload: tuple) -> None:
        replica, pin_id = payload
        replica.scheduler.prefix_cache.free(pin_id)
        replica.nudge(now)  # requests may have been waiting for the room
