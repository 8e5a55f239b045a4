"""One category's cached entries: a time to live and a quota with LRU eviction.

An entry is a topic (the question it answers) and the time its response
was stored.  It is live while ``now < stored_s + ttl_s``.  Beyond
``max_entries`` the least recently used entry (stored or hit last) is
evicted.  Every TTL of a category is the same, so entries expire in the
order they were stored: expiry pops the oldest, amortised O(1).
"""

from __future__ import annotations

from collections import OrderedDict


class CategoryStore:
    """Entries of one category (topics), with their expiry and use order."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._expires: OrderedDict[int, float] = OrderedDict()  # topic -> expiry (s), in storing order
        self._used: OrderedDict[int, None] = OrderedDict()  # topics, least recently used first
        self.num_expired = 0
        self.num_evicted = 0

    def __len__(self) -> int:
        return len(self._expires)

    def __contains__(self, topic: int) -> bool:
        return topic in self._expires

    def expire(self, now: float) -> None:
        """Drop the entries whose time to live ended at or before ``now``."""
        expires = self._expires
        while expires:
            topic, at = next(iter(expires.items()))
            if at > now:
                return
            del expires[topic]
            del self._used[topic]
            self.num_expired += 1

    def touch(self, topic: int) -> None:
        """A hit on ``topic``'s entry: it becomes the most recently used (its TTL is unchanged)."""
        self._used.move_to_end(topic)

    def store(self, topic: int, now: float) -> None:
        """Store (or refresh) ``topic``'s response at ``now``; evict the LRU entry beyond the quota."""
        if topic in self._expires:
            del self._expires[topic]
            self._used.move_to_end(topic)
        else:
            self._used[topic] = None
        self._expires[topic] = now + self.ttl_s
        if len(self._used) > self.max_entries:
            victim, _ = self._used.popitem(last=False)
            del self._expires[victim]
            self.num_evicted += 1

    def topics(self) -> list[int]:
        """The live topics, least recently used first (for tests and inspection)."""
        return list(self._used)
