"""Global routers: which replica receives an arriving request.

A router is a small object with one method, ``route``.  Routers are chosen
by name from ``ROUTERS``; adding one means adding a class here (and its
test).  Routers see replicas only through the read-only ``ReplicaView``
protocol, never the scheduler internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence as Seq

if TYPE_CHECKING:
    from servesim.cluster.router_config import RouterConfig


class ReplicaView(Protocol):
    """What a router may read about a replica."""

    index: int

    @property
    def num_outstanding(self) -> int:
        """Requests routed to the replica and not yet finished (waiting + running)."""


class Router(Protocol):
    def route(self, request_id: int, replicas: Seq[ReplicaView]) -> int:
        """Index (into ``replicas``) of the replica that receives ``request_id``."""


class RoundRobinRouter:
    """Replicas in turn: 0, 1, ..., n-1, 0, ..."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def route(self, request_id: int, replicas: Seq[ReplicaView]) -> int:
        chosen = self._next % len(replicas)
        self._next = chosen + 1
        return chosen


class LeastOutstandingRouter:
    """The replica with the fewest outstanding requests; ties go to the lowest index."""

    __slots__ = ()

    def route(self, request_id: int, replicas: Seq[ReplicaView]) -> int:
        best = 0
        best_load = replicas[0].num_outstanding
        for i in range(1, len(replicas)):
            load = replicas[i].num_outstanding
            if load < best_load:
                best, best_load = i, load
        return best


ROUTERS: dict[str, type] = {
    "round_robin": RoundRobinRouter,
    "least_outstanding": LeastOutstandingRouter,
}


def make_router(config: RouterConfig) -> Router:
    """Instantiate the configured router."""
    return ROUTERS[config.policy]()
