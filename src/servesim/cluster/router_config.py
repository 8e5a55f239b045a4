"""The router section of a scenario (``router:``); the routers are in ``routers``.

Kept apart from the routers so that the compiled hot path holds no pydantic model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RouterConfig(BaseModel):
    """How arriving requests are spread over replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal[
        "round_robin", "least_outstanding", "least_kv", "random", "power_of_two", "session_affinity", "laps",
        "prefix_aware",
    ] = Field(
        "least_outstanding",
        description=(
            "'round_robin': replicas in turn; 'least_outstanding': fewest waiting+running requests; "
            "'least_kv': smallest KV-cache usage, then fewest outstanding; 'random': uniform; "
            "'power_of_two': the less loaded of two drawn at random; 'session_affinity': a session's "
            "requests go where its first went (placed by least outstanding); 'laps': prompts longer than "
            "laps_threshold_tokens go to a long-prefill group of replicas, the others to a short-prefill group, "
            "least outstanding within each; 'prefix_aware': the longest cached prompt prefix among replicas within "
            "prefix_load_slack of the least loaded (needs cluster.prefix_caching). Ties go to the lowest index."
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
        description="'prefix_aware': replicas with at most this many more outstanding requests than the least loaded compete on cache hits (count).",
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
