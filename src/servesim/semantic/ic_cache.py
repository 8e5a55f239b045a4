"""IC-Cache (SEED_CLAIMS #19): serve a request with a small model plus retrieved examples.

``router.policy: ic_cache`` is ``quality_threshold`` (the cheapest pool whose
expected quality at the request's difficulty reaches ``min_quality``, then
its least loaded replica) with one change: when the semantic cache's lookup
found an entry scoring at least ``ic_cache.min_similarity`` (the front's
``examples``), the example pool (``ic_cache.pool``, else the cheapest) is
weighed with the examples in its prompt:

* its expected quality for the request is ``min(1, quality(d) + quality_boost)``;
* its prompt is ``examples x tokens_per_example`` tokens longer (a longer
  prefill, and more KV), which must still fit the pool.

The router cannot tell a related example from an unrelated one; the run's
quality books can: only a related example adds ``quality_boost`` to the
quality recorded for the request (``quality_bonus``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence as Seq

import numpy as np

from servesim.cluster.model_routing import PoolProfile, _ModelRouter
from servesim.semantic.front import NO_EXAMPLES, RELATED

if TYPE_CHECKING:
    from servesim.cluster.views import ReplicaView
    from servesim.scheduler.sequence import Sequence
    from servesim.semantic.config import IcCacheConfig
    from servesim.semantic.front import SemanticFront


class IcCacheRouter(_ModelRouter):
    """The cheapest pool good enough for the request, counting the lift of cached examples."""

    def __init__(
        self, pools: Seq[PoolProfile], difficulty: np.ndarray, front: SemanticFront, ic: IcCacheConfig, min_quality: float
    ) -> None:
        super().__init__(pools, difficulty)
        self.front = front
        self.ic = ic
        self.min_quality = min_quality
        self.example_pool = self._by_price[0] if ic.pool is None else next(p for p in self.pools if p.name == ic.pool)
        self.extra_tokens = ic.examples * ic.tokens_per_example

    def choose_pool(self, request: Sequence) -> tuple[PoolProfile, bool]:
        """(pool, whether it gets the examples): the first pool by price whose expected quality
        (with examples, for the example pool when the lookup found some) reaches min_quality,
        else the best; pools that cannot hold the request (with its examples) are skipped."""
        d = float(self.difficulty[request.rid])
        found = self.front.examples[request.rid] != NO_EXAMPLES
        options = []
        for pool in self._by_price:
            with_examples = found and pool is self.example_pool
            prompt = request.num_prompt + (self.extra_tokens if with_examples else 0)
            if prompt + request.max_output - 1 >= pool.fits_tokens:
                continue
            quality = min(1.0, pool.quality(d) + (self.ic.quality_boost if with_examples else 0.0))
            if quality >= self.min_quality:
                return pool, with_examples
            options.append((quality, pool, with_examples))
        if not options:
            return self._by_price[0], False  # fits none: the simulation places it where it fits
        best = max(options, key=lambda option: option[0])  # (the cheaper of equals: max keeps the first)
        return best[1], best[2]

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        pool, with_examples = self.choose_pool(request)
        if with_examples:
            request.num_prompt += self.extra_tokens
            self.front.sent_with_examples[request.rid] = self.front.examples[request.rid]
            self.front.example_tokens += self.extra_tokens
        best, _ = self._least_loaded_in(pool, replicas)
        return max(best, 0)


def quality_bonus(front: SemanticFront, boost: float) -> np.ndarray:
    """Per request id, what its examples added to its pool's quality: ``boost`` if it was sent
    with related examples, else 0."""
    return np.where(front.sent_with_examples == RELATED, boost, 0.0)
