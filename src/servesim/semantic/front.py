"""The semantic cache in front of the fleet: every arrival is looked up first.

Each request gets a category (by the categories' shares) and a topic within
it (Zipf over the category's topics), drawn up front on the stream
``semantic_cache.requests``; its similarity scores (against an entry of its
own topic, and against the nearest unrelated entry) on
``semantic_cache.similarity``.  So other streams' draws do not move, and a
request's draws do not depend on what the cache holds when it arrives.

At arrival (``arrive``) the request's category store drops expired entries
and the lookup is decided (``decide``):

* the related score counts if the category holds the request's topic, the
  unrelated score if it holds any other topic;
* the best of them at or above the category's threshold is a hit; a hit on
  the unrelated entry is a FALSE hit (the answer to another question).

A hit is answered ``lookup_s`` later with no replica (the simulation's
``_finish_from_cache``); a miss reaches the router ``lookup_s`` later
(``_admit``), so the search latency is in its TTFT.  A response is stored
when its request finishes on the fleet (``on_finished``), not at arrival.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from servesim.cluster.events import ARRIVAL
from servesim.semantic.store import CategoryStore

if TYPE_CHECKING:
    from servesim.core.rng import RandomStreams
    from servesim.semantic.config import CategoryConfig, SemanticCacheConfig

# Lookup outcomes (per request).
MISS, HIT, FALSE_HIT = 0, 1, 2
# IC-Cache examples a lookup found (per request): none, of the request's topic, of another.
NO_EXAMPLES, RELATED, UNRELATED = 0, 1, 2


def decide(related: float, unrelated: float, threshold: float) -> int:
    """``HIT``, ``FALSE_HIT`` or ``MISS`` from the best scores (a negative score: no such entry).

    The best entry answers when it scores at least ``threshold``; the related one wins a tie.
    """
    if max(related, unrelated) < threshold:
        return MISS
    return HIT if related >= unrelated else FALSE_HIT


def zipf_cdf(num_topics: int, s: float) -> np.ndarray:
    """Cumulative probabilities of topics 1..num_topics with P(k) proportional to k^-s."""
    weights = np.arange(1, num_topics + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def draw_requests(categories: list[CategoryConfig], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(category index, topic index) of each of ``n`` requests: one uniform draw for the
    category and one for the topic, so each request's draws do not depend on the others'."""
    shares = np.array([c.share for c in categories], dtype=np.float64)
    u_category = rng.random(n)
    u_topic = rng.random(n)
    category = np.searchsorted(np.cumsum(shares) / shares.sum(), u_category, side="right")
    category = np.minimum(category, len(categories) - 1)  # (a uniform of 1 - epsilon after rounding)
    topic = np.zeros(n, np.int64)
    for c, cat in enumerate(categories):
        rows = category == c
        cdf = zipf_cdf(cat.num_topics, cat.zipf_s)
        topic[rows] = np.minimum(np.searchsorted(cdf, u_topic[rows], side="right"), cat.num_topics - 1)
    return category.astype(np.int64), topic


class SemanticFront:
    """The cache's state and books over one run; ``attach`` it to the ``Simulation``."""

    def __init__(self, config: SemanticCacheConfig, num_requests: int, streams: RandomStreams) -> None:
        self.config = config
        self.lookup_s = config.search.lookup_s()
        self.serve = config.serve_responses
        self.ic = config.ic_cache
        self.thresholds = [c.threshold for c in config.categories]
        self.category, self.topic = draw_requests(config.categories, num_requests, streams.stream("semantic_cache.requests"))
        scores = streams.stream("semantic_cache.similarity")
        sim = config.similarity
        self.paraphrase = scores.beta(sim.paraphrase.a, sim.paraphrase.b, num_requests)
        self.unrelated = scores.beta(sim.unrelated.a, sim.unrelated.b, num_requests)
        self.stores = [CategoryStore(c.ttl_s, c.max_entries) for c in config.categories]
        self.outcome = np.zeros(num_requests, np.int8)  # MISS / HIT / FALSE_HIT, decided at arrival
        self.examples = np.zeros(num_requests, np.int8)  # what IC-Cache examples the lookup found
        self.sent_with_examples = np.zeros(num_requests, np.int8)  # what the router sent (set by IcCacheRouter)
        self.reached_fleet = np.zeros(num_requests, bool)
        self.example_tokens = 0  # prompt tokens IC-Cache examples added
        self.tokens_served = 0  # output tokens of requests answered from the cache
        self.sim = None

    def attach(self, sim) -> None:
        """Put the cache in front of ``sim``: its arrivals come here first."""
        self.sim = sim
        sim.front = self

    # ------------------------------------------------------------ lookups

    def scores(self, i: int, now: float) -> tuple[float, float]:
        """(related, unrelated) scores of request ``i`` against its category's live entries at ``now``
        (-1 where the category holds no such entry)."""
        store = self.stores[self.category[i]]
        store.expire(now)
        has_topic = int(self.topic[i]) in store
        related = float(self.paraphrase[i]) if has_topic else -1.0
        unrelated = float(self.unrelated[i]) if len(store) - has_topic > 0 else -1.0  # another topic is held
        return related, unrelated

    def arrive(self, seq, now: float) -> None:
        """Look ``seq`` up: answer it from the cache or pass it to the fleet, ``lookup_s`` later."""
        i = seq.rid
        related, unrelated = self.scores(i, now)
        outcome = decide(related, unrelated, self.thresholds[self.category[i]])
        loop = self.sim.loop
        if self.serve and outcome != MISS:
            self.outcome[i] = outcome
            if outcome == HIT:
                self.stores[self.category[i]].touch(int(self.topic[i]))
            loop.schedule(now + self.lookup_s, ARRIVAL, self._on_answered, seq)
            return
        if self.ic is not None and max(related, unrelated) >= self.ic.min_similarity:
            self.examples[i] = RELATED if related >= unrelated else UNRELATED
        loop.schedule(now + self.lookup_s, ARRIVAL, self._on_searched, seq)

    def _on_answered(self, now: float, seq) -> None:
        self.tokens_served += seq.max_output
        self.sim._finish_from_cache(seq, now)

    def _on_searched(self, now: float, seq) -> None:
        self.reached_fleet[seq.rid] = True
        self.sim._admit(seq, now)

    def on_finished(self, seqs: list, now: float) -> None:
        """Requests the fleet finished at ``now``: store their responses."""
        for seq in seqs:
            i = seq.rid
            self.stores[self.category[i]].store(int(self.topic[i]), now)
