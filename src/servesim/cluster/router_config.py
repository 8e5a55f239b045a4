"""The router section of a scenario (``router:``); the routers are in ``routers``.

Kept apart from the routers so that the compiled hot path holds no pydantic model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


# Policies that choose a model (a pool) as well as a replica.
MODEL_ROUTERS = ("route_balance", "quality_threshold", "cheapest_first", "ic_cache")


class RouterConfig(BaseModel):
    """How arriving requests are spread over replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    policy: Literal[
        "round_robin", "least_outstanding", "least_kv", "random", "power_of_two", "session_affinity", "laps",
        "prefix_aware", "route_balance", "quality_threshold", "cheapest_first", "adapter_affinity", "ic_cache",
    ] = Field(
        "least_outstanding",
        description=(
            "'round_robin': replicas in turn; 'least_outstanding': fewest waiting+running requests; "
            "'least_kv': smallest KV-cache usage, then fewest outstanding; 'random': uniform; "
            "'power_of_two': the less loaded of two drawn at random; 'session_affinity': a session's "
            "requests go where its first went (placed by least outstanding); 'laps': prompts longer than "
            "laps_threshold_tokens go to a long-prefill group of replicas, the others to a short-prefill group, "
            "least outstanding within each; 'prefix_aware': the longest cached prompt prefix among replicas within "
            "prefix_load_slack of the least loaded (needs cluster.prefix_caching); 'adapter_affinity': a replica that holds the "
            "request's LoRA adapter, among those within prefix_load_slack of the least loaded (needs cluster.lora). Model routers (need cluster.pools "
            "and workload.difficulty): 'route_balance': the replica with the best weighted score of expected quality, "
            "predicted latency from its load, and price; 'quality_threshold': the cheapest pool whose quality at the "
            "request's difficulty reaches min_quality, regardless of load, then its least loaded replica; "
            "'cheapest_first': the cheapest pool with a replica under spill_outstanding requests; 'ic_cache': as "
            "'quality_threshold', but a request with similar examples in the semantic cache may go to the example pool, "
            "whose quality for it rises by semantic_cache.ic_cache.quality_boost (its prompt grows by the examples). "
            "Ties go to the lowest index."
        ),
    )
    laps_threshold_tokens: int = Field(
        256, ge=1, description="'laps': prompts longer than this go to the long-prefill replicas (tokens)."
    )
    laps_long_fraction: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description=(
            "'laps': share of the replicas that take long prompts (the last ceil(share x replicas), "
            "at least one; at least one replica is left for short prompts)."
        ),
    )
    laps_batch_window_s: float = Field(
        0.0,
        ge=0.0,
        description=(
            "'laps': how long a short prompt may wait at the router so that short prompts bound for the "
            "same replica enter it together (s); the window opens with the first one held. 0: no window."
        ),
    )
    prefix_load_slack: int = Field(
        4,
        ge=0,
        description=(
            "'prefix_aware', 'adapter_affinity': replicas with at most this many more outstanding requests than the least "
            "loaded compete on cache hits or resident adapters (count)."
        ),
    )
    quality_weight: float = Field(1.0, ge=0, description="'route_balance': weight of expected quality (0..1) in the score.")
    latency_weight: float = Field(
        0.1, ge=0, description="'route_balance': score lost per second of predicted latency (queueing + prefill + decode)."
    )
    cost_weight: float = Field(
        0.2, ge=0, description="'route_balance': score lost at the price of the most expensive pool (prices count relative to it)."
    )
    min_quality: float = Field(
        0.8, ge=0, le=1, description="'quality_threshold', 'ic_cache': least expected quality a pool must reach at the request's difficulty."
    )
    spill_outstanding: int = Field(
        16, ge=1, description="'cheapest_first': a pool is full when each of its replicas has this many outstanding requests (count)."
    )
    expected_output_tokens: int | None = Field(
        None,
        ge=1,
        description="'route_balance': output length the latency prediction assumes (tokens); null = the workload's mean.",
    )
    view_delay_s: float = Field(
        0.0,
        ge=0.0,
        description=(
            "How stale the router's view of the replicas may be (s). 0: live. Otherwise the router "
            "reads a snapshot of every replica, taken anew at the first arrival once it is this old "
            "(a cache with this time to live), like a router that scrapes replica metrics."
        ),
    )
