"""Model routers: which model (pool) and which replica of it serve a request.

A heterogeneous cluster (``cluster.pools``) holds several pools, each its own
model on its own GPUs.  A model router sees, for every pool, a
``PoolProfile``: the model's quality curve (expected answer quality against
request difficulty), its price per token, and a few step times from the
pool's step model from which it predicts a replica's latency under load.
Each request carries a difficulty in [0, 1] (``workload.difficulty``).

Three policies (``router.policy``):

* ``route_balance`` (after RouteBalance, SEED_CLAIMS #17): one joint choice
  of (model, replica) by the score
  ``quality_weight * quality - latency_weight * predicted_latency_s
  - cost_weight * price / most_expensive_price``: the queueing delay of a
  busy replica is priced in the same decision as the model's quality.
* ``quality_threshold`` (a BEST-Route-like baseline): the cheapest pool whose
  quality at the request's difficulty reaches ``min_quality`` (else the best
  pool), whatever its load; then that pool's least loaded replica.
* ``cheapest_first``: the cheapest pool that has a replica with fewer than
  ``spill_outstanding`` outstanding requests; quality is ignored.

Every policy considers only pools whose replicas can hold the request's KV
cache and context.  Ties go to the lowest replica index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence as Seq

import numpy as np

# Time constant (s) of the router's running average of the prompt tokens it sends each replica.
RATE_WINDOW_S = 10.0

if TYPE_CHECKING:
    from servesim.cluster.router_config import RouterConfig
    from servesim.cluster.views import ReplicaView
    from servesim.scheduler.sequence import Sequence


@dataclass(frozen=True)
class PoolProfile:
    """What a model router knows about one pool.

    ``first`` and ``count`` locate its replicas (indices ``first ..
    first + count - 1``).  ``quality_points`` are (difficulty, quality)
    pairs joined by straight lines, flat beyond the ends.
    ``decode_step_s[b - 1]`` is one decode iteration at batch ``b`` (for
    ``b`` up to ``max_num_seqs``); ``prefill_s_per_token`` the time a
    replica spends per prompt token.  A replica holds requests whose KV
    peak (prompt + output - 1 tokens) is below ``fits_tokens``.
    """

    name: str
    first: int
    count: int
    quality_points: tuple[tuple[float, float], ...]
    price_usd_per_mtok: float
    prefill_s_per_token: float
    decode_step_s: tuple[float, ...]
    fits_tokens: int

    @property
    def max_num_seqs(self) -> int:
        return len(self.decode_step_s)

    def quality(self, difficulty: float) -> float:
        """Expected quality of this pool's answer to a request of ``difficulty``."""
        xs = [d for d, _ in self.quality_points]
        ys = [q for _, q in self.quality_points]
        return float(np.interp(difficulty, xs, ys))

    def predicted_latency_s(
        self, prompt_tokens: int, output_tokens: int, outstanding: int, prompt_tokens_per_s: float = 0.0
    ) -> float:
        """End-to-end latency a request would see joining a replica that has ``outstanding`` requests
        and receives ``prompt_tokens_per_s`` of other prompts.

        Its prefill (``prompt_tokens x prefill_s_per_token``) plus its decode
        at the batch it would join (``output_tokens`` iterations of the step
        at ``min(outstanding + 1, max_num_seqs)``); stretched by the share of
        the replica's time that other prompts' prefills take, ``1 / (1 - u)``
        with ``u = prompt_tokens_per_s x prefill_s_per_token`` (capped at
        0.9), and by the full batches queued ahead of it when the replica is
        over its batch limit: ``(outstanding + 1 - max_num_seqs) /
        max_num_seqs`` more rounds.
        """
        limit = self.max_num_seqs
        batch = min(outstanding + 1, limit)
        service = prompt_tokens * self.prefill_s_per_token + output_tokens * self.decode_step_s[batch - 1]
        busy_with_prefill = min(prompt_tokens_per_s * self.prefill_s_per_token, 0.9)
        queued_rounds = max(0, outstanding + 1 - limit) / limit
        return service / (1.0 - busy_with_prefill) * (1.0 + queued_rounds)


class _ModelRouter:
    """Shared plumbing: the pool of each replica, difficulties, feasibility."""

    def __init__(self, pools: Seq[PoolProfile], difficulty: np.ndarray) -> None:
        self.pools = list(pools)
        self.difficulty = difficulty
        self._pool_of: dict[int, PoolProfile] = {}
        for pool in self.pools:
            for index in range(pool.first, pool.first + pool.count):
                self._pool_of[index] = pool
        # Pools by price, cheapest first (ties: configured order).
        self._by_price = sorted(self.pools, key=lambda p: p.price_usd_per_mtok)
        self._top_price = max(p.price_usd_per_mtok for p in self.pools) or 1.0

    def pool_of(self, replica_index: int) -> PoolProfile:
        return self._pool_of[replica_index]

    def _fits(self, pool: PoolProfile, request: Sequence) -> bool:
        return request.num_prompt + request.max_output - 1 < pool.fits_tokens

    def _least_loaded_in(self, pool: PoolProfile, replicas: Seq[ReplicaView]) -> tuple[int, int]:
        """(position in ``replicas``, outstanding) of ``pool``'s least loaded replica; (-1, 0) if none is offered."""
        best, best_load = -1, 0
        for i, view in enumerate(replicas):
            if self._pool_of[view.index] is pool and (best < 0 or view.num_outstanding < best_load):
                best, best_load = i, view.num_outstanding
        return best, best_load


class RouteBalanceRouter(_ModelRouter):
    """The (model, replica) pair with the best weighted score of quality, predicted latency and price."""

    def __init__(
        self,
        pools: Seq[PoolProfile],
        difficulty: np.ndarray,
        *,
        quality_weight: float,
        latency_weight: float,
        cost_weight: float,
        expected_output_tokens: int,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        super().__init__(pools, difficulty)
        self.quality_weight = quality_weight
        self.latency_weight = latency_weight
        self.cost_weight = cost_weight
        self.expected_output_tokens = expected_output_tokens
        self.rate_window_s = rate_window_s
        # Per replica: prompt tokens the router sent it, decayed with time
        # constant rate_window_s, and when that was last brought up to date.
        self._sent: dict[int, tuple[float, float]] = {}

    def prompt_rate(self, replica_index: int, now: float) -> float:
        """Prompt tokens per second the router has been sending the replica (an exponential average)."""
        sent, at = self._sent.get(replica_index, (0.0, now))
        return sent * math.exp(-(now - at) / self.rate_window_s) / self.rate_window_s

    def score(self, request: Sequence, view: ReplicaView) -> float:
        """The replica's score for ``request`` (higher is better); -inf when its pool cannot hold it."""
        pool = self._pool_of[view.index]
        if not self._fits(pool, request):
            return float("-inf")
        quality = pool.quality(float(self.difficulty[request.rid]))
        rate = self.prompt_rate(view.index, request.arrival_s)
        latency = pool.predicted_latency_s(request.num_prompt, self.expected_output_tokens, view.num_outstanding, rate)
        return (
            self.quality_weight * quality
            - self.latency_weight * latency
            - self.cost_weight * pool.price_usd_per_mtok / self._top_price
        )

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        best, best_score = 0, float("-inf")
        for i, view in enumerate(replicas):
            s = self.score(request, view)
            if s > best_score:
                best, best_score = i, s
        index, now = replicas[best].index, request.arrival_s
        self._sent[index] = (self.prompt_rate(index, now) * self.rate_window_s + request.num_prompt, now)
        return best


class QualityThresholdRouter(_ModelRouter):
    """The cheapest pool good enough for the request's difficulty, regardless of load; its least loaded replica."""

    def __init__(self, pools: Seq[PoolProfile], difficulty: np.ndarray, *, min_quality: float) -> None:
        super().__init__(pools, difficulty)
        self.min_quality = min_quality

    def choose_pool(self, request: Sequence) -> PoolProfile:
        d = float(self.difficulty[request.rid])
        feasible = [p for p in self._by_price if self._fits(p, request)] or self._by_price
        for pool in feasible:
            if pool.quality(d) >= self.min_quality:
                return pool
        # None is good enough: the best one (the cheaper of equals, by max's first pick).
        return max(feasible, key=lambda p: p.quality(d))

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        best, _ = self._least_loaded_in(self.choose_pool(request), replicas)
        return max(best, 0)


class CheapestFirstRouter(_ModelRouter):
    """The cheapest pool with a replica under ``spill_outstanding`` requests; quality is ignored."""

    def __init__(self, pools: Seq[PoolProfile], difficulty: np.ndarray, *, spill_outstanding: int) -> None:
        super().__init__(pools, difficulty)
        self.spill_outstanding = spill_outstanding

    def route(self, request: Sequence, replicas: Seq[ReplicaView]) -> int:
        fallback, fallback_load = -1, 0
        for pool in self._by_price:
            if not self._fits(pool, request):
                continue
            best, load = self._least_loaded_in(pool, replicas)
            if best < 0:
                continue
            if load < self.spill_outstanding:
                return best
            if fallback < 0 or load < fallback_load:
                fallback, fallback_load = best, load
        # Every pool is full: the least loaded replica of any.
        return max(fallback, 0)


def make_model_router(config: RouterConfig, pools: Seq[PoolProfile], difficulty: np.ndarray, mean_output_tokens: float):
    """The model router ``config.policy`` names (one of ``MODEL_ROUTERS``)."""
    if config.policy == "route_balance":
        expected = config.expected_output_tokens or max(1, int(round(mean_output_tokens)))
        return RouteBalanceRouter(
            pools,
            difficulty,
            quality_weight=config.quality_weight,
            latency_weight=config.latency_weight,
            cost_weight=config.cost_weight,
            expected_output_tokens=expected,
        )
    if config.policy == "quality_threshold":
        return QualityThresholdRouter(pools, difficulty, min_quality=config.min_quality)
    if config.policy == "cheapest_first":
        return CheapestFirstRouter(pools, difficulty, spill_outstanding=config.spill_outstanding)
    raise ValueError(f"router.policy = {config.policy!r} is not a model router")
