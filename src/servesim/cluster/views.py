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

    def prefix_match(self, block_ids: tuple[int, ...]) -> int:
        """Leading prefix blocks of a prompt the replica's prefix cache holds (0 without one)."""

    def has_adapter(self, adapter: int) -> bool:
        """Whether the replica holds this LoRA adapter in GPU memory."""


class ReplicaSnapshot:
    """A replica's readings, copied at one moment."""

    __slots__ = ("index", "num_outstanding", "kv_usage", "_replica")

    def __init__(self, index: int, num_outstanding: int, kv_usage: float, replica: ReplicaView | None = None) -> None:
        self.index = index
        self.num_outstanding = num_outstanding
        self.kv_usage = kv_usage
        self._replica = replica

    @classmethod
    def of(cls, replica: ReplicaView) -> ReplicaSnapshot:
        """The replica's readings now."""
        return cls(replica.index, replica.num_outstanding, replica.kv_usage, replica)

    def prefix_match(self, block_ids: tuple[int, ...]) -> int:
        """Read live: a router's cache index follows the replicas' caches as it routes."""
        return 0 if self._replica is None else self._replica.prefix_match(block_ids)

    def has_adapter(self, adapter: int) -> bool:
        """Read live, like prefix matches: a router tracks which adapters it sent where."""
        return self._replica is not None and self._replica.has_adapter(adapter)

    def __repr__(self) -> str:
        return f"ReplicaSnapshot({self.index}, outstanding={self.num_outstanding}, kv={self.kv_usage:.3f})"
