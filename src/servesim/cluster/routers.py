"""Global routers: which replica receives an arriving request.

A router is a small object with one method, ``route(request, replicas)``,
returning an index into ``replicas``.  ``request`` is the arriving
``Sequence`` (its id, prompt length, priority and session); ``replicas``
are read-only ``ReplicaView``s (``servesim.cluster.views``), live or
snapshots up to ``router.view_delay_s`` old.  Routers are chosen by name
from ``ROUTERS``; adding one means adding a class here, its name in
``RouterConfig.policy`` and its test.

Every policy breaks ties towards the lowest index, so a run is
deterministic; the random ones draw from the run's ``router`` stream.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, Sequence as Seq

import numpy as np

if TYPE_CHECKING:
    from servesim.cluster.router_config import RouterConfig
    from servesim.cluster.views import ReplicaView
    from servesim.scheduler.sequence import Sequence

# Uniform draws fetched from the generator at a time (a draw per call is slow).
_DRAWS = 4096


class Router(Protocol):
    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        """Index (into ``replicas``) of the replica that receives ``request``."""


class RoundRobinRouter:
    """Replicas in turn: 0, 1, ..., n-1, 0, ..."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        chosen = self._next % len(replicas)
        self._next = chosen + 1
        return chosen


class LeastOutstandingRouter:
    """The replica with the fewest outstanding requests; ties go to the lowest index."""

    __slots__ = ()

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        best = 0
        best_load = replicas[0].num_outstanding
        for i in range(1, len(replicas)):
            load = replicas[i].num_outstanding
            if load < best_load:
                best, best_load = i, load
        return best


class LeastKvRouter:
    """The replica with the smallest KV-cache usage; ties go to fewer outstanding
    requests, then to the lowest index."""

    __slots__ = ()

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        best = 0
        best_key = (replicas[0].kv_usage, replicas[0].num_outstanding)
        for i in range(1, len(replicas)):
            key = (replicas[i].kv_usage, replicas[i].num_outstanding)
            if key < best_key:
                best, best_key = i, key
        return best


class _Uniform:
    """Uniform draws in [0, 1) from a generator, fetched a block at a time."""

    __slots__ = ("_rng", "_buffer", "_next")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buffer: list[float] = []
        self._next = 0

    def index(self, n: int) -> int:
        """A uniform integer in ``0 .. n-1``."""
        if self._next == len(self._buffer):
            self._buffer = self._rng.random(_DRAWS).tolist()
            self._next = 0
        u = self._buffer[self._next]
        self._next += 1
        return int(u * n)


class RandomRouter:
    """A replica drawn uniformly at random."""

    __slots__ = ("_draw",)

    def __init__(self, rng: np.random.Generator) -> None:
        self._draw = _Uniform(rng)

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        return self._draw.index(len(replicas))


class PowerOfTwoRouter:
    """Two distinct replicas drawn at random; the one with fewer outstanding
    requests wins, the first drawn on a tie (Mitzenmacher's "power of two choices")."""

    __slots__ = ("_draw",)

    def __init__(self, rng: np.random.Generator) -> None:
        self._draw = _Uniform(rng)

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        n = len(replicas)
        if n == 1:
            return 0
        first = self._draw.index(n)
        # The second among the other n - 1, so the two always differ.
        second = self._draw.index(n - 1)
        if second >= first:
            second += 1
        if replicas[second].num_outstanding < replicas[first].num_outstanding:
            return second
        return first


class SessionAffinityRouter:
    """Every request of a session goes where the session's first request went;
    that first request, and requests with no session, go to the replica with
    the fewest outstanding requests."""

    __slots__ = ("_home", "_least")

    def __init__(self) -> None:
        self._home: dict[str, int] = {}
        self._least = LeastOutstandingRouter()

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        session = request.session
        if session is None:
            return self._least.route(request, replicas)
        home = self._home.get(session)
        if home is None:
            home = self._home[session] = self._least.route(request, replicas)
        return home


class LapsRouter:
    """Length-aware placement of prefills (LAPS, arXiv 2601.11589), across instances.

    The replicas are split in two groups: the last ``ceil(long_fraction * n)``
    (at least one) take prompts longer than ``threshold_tokens``, the others
    the short ones, so a short prompt never queues behind a long prefill.
    Within its group a request goes to the replica with the fewest
    outstanding requests (ties to the lowest index).  With one replica both
    groups are that replica.
    """

    __slots__ = ("threshold_tokens", "long_fraction")

    def __init__(self, threshold_tokens: int = 256, long_fraction: float = 0.5) -> None:
        self.threshold_tokens = threshold_tokens
        self.long_fraction = long_fraction

    def num_long(self, n: int) -> int:
        """Replicas (of ``n``) that take long prompts: the last ones."""
        if n == 1:
            return 1
        return min(max(math.ceil(self.long_fraction * n), 1), n - 1)

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        n = len(replicas)
        first_long = n - self.num_long(n)
        if n == 1:
            return 0
        if request.num_prompt > self.threshold_tokens:
            lo, hi = first_long, n
        else:
            lo, hi = 0, first_long
        best, best_load = lo, replicas[lo].num_outstanding
        for i in range(lo + 1, hi):
            load = replicas[i].num_outstanding
            if load < best_load:
                best, best_load = i, load
        return best


class PrefixAwareRouter:
    """The replica whose prefix cache holds the longest prefix of the prompt, among those
    within ``load_slack`` outstanding requests of the least loaded (the SGLang and llm-d
    cache-aware routers' rule); ties go to fewer outstanding, then the lowest index."""

    __slots__ = ("load_slack",)

    def __init__(self, load_slack: int = 4) -> None:
        self.load_slack = load_slack

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        prefix = request.prefix
        matches = [-(replica.prefix_match(prefix) if prefix else 0) for replica in replicas]
        return _best_within_slack(replicas, self.load_slack, matches)


class AdapterAffinityRouter:
    """A replica that already holds the request's LoRA adapter in GPU memory, among those within
    ``load_slack`` outstanding requests of the least loaded; otherwise (or without an adapter)
    the least loaded.  Ties go to fewer outstanding, then the lowest index."""

    __slots__ = ("load_slack",)

    def __init__(self, load_slack: int = 4) -> None:
        self.load_slack = load_slack

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        adapter = request.adapter
        misses = [0 if adapter >= 0 and replica.has_adapter(adapter) else 1 for replica in replicas]
        return _best_within_slack(replicas, self.load_slack, misses)


def _best_within_slack(replicas: Seq[ReplicaView], slack: int, scores: list) -> int:
    """Among replicas within ``slack`` outstanding requests of the least loaded, the one with the
    lowest score; ties go to fewer outstanding, then the lowest index."""
    loads = [r.num_outstanding for r in replicas]
    bound = min(loads) + slack
    best, best_key = 0, None
    for i in range(len(replicas)):
        if loads[i] > bound:
            continue
        key = (scores[i], loads[i])
        if best_key is None or key < best_key:
            best, best_key = i, key
    return best


ROUTERS: dict[str, type] = {
    "round_robin": RoundRobinRouter,
    "least_outstanding": LeastOutstandingRouter,
    "least_kv": LeastKvRouter,
    "random": RandomRouter,
    "power_of_two": PowerOfTwoRouter,
    "session_affinity": SessionAffinityRouter,
    "laps": LapsRouter,
    "prefix_aware": PrefixAwareRouter,
    "adapter_affinity": AdapterAffinityRouter,
}
# Policies that draw random numbers (they take the run's "router" stream).
RANDOMIZED = frozenset({"random", "power_of_two"})


def make_router(config: RouterConfig, rng: np.random.Generator | None = None) -> Router:
    """Instantiate the configured router; randomized policies draw from ``rng``."""
    cls = ROUTERS[config.policy]
    if config.policy in RANDOMIZED:
        if rng is None:
            raise ValueError(f"router policy {config.policy!r} needs a random stream")
        return cls(rng)
    if config.policy == "laps":
        return cls(config.laps_threshold_tokens, config.laps_long_fraction)
    if config.policy in ("prefix_aware", "adapter_affinity"):
        return cls(config.prefix_load_slack)
    return cls()
