"""What a router may read about a replica, live or as a snapshot.

Routers never touch scheduler internals: they read a ``ReplicaView``.  A
live replica is one; ``ReplicaSnapshot`` is a frozen copy of its readings,
which a router with a stale view (``router.view_delay_s``) reads instead.
"""

from __future__ import annotations

from typing import Protocol


class ReplicaView(Protocol):
    """A replica's state as a router sees it."""

    index: int

    @property
    def num_outstanding(self) -> int:
        """Requests routed to the replica and not yet finished (waiting + running)."""

    @property
    def kv_usage(self) -> float:
        """Fraction of the replica's KV-cache blocks in use, 0..1."""


class ReplicaSnapshot:
    """A replica's readings, copied at one moment."""

    __slots__ = ("index", "num_outstanding", "kv_usage")

    def __init__(self, index: int, num_outstanding: int, kv_usage: float) -> None:
        self.index = index
        self.num_outstanding = num_outstanding
        self.kv_usage = kv_usage

    @classmethod
    def of(cls, replica: ReplicaView) -> ReplicaSnapshot:
        """The replica's readings now."""
        return cls(replica.index, replica.num_outstanding, replica.kv_usage)

    def __repr__(self) -> str:
        return f"ReplicaSnapshot({self.index}, outstanding={self.num_outstanding}, kv={self.kv_usage:.3f})"
