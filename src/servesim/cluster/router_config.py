"""The router section of a scenario (``router:``); the routers are in ``routers``.

Kept apart from the routers so that the compiled hot path holds no pydantic model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RouterConfig(BaseModel):
    """How arriving requests are spread over replicas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["round_robin", "least_outstanding"] = Field(
        "least_outstanding",
        description="'round_robin': replicas in turn; 'least_outstanding': fewest waiting+running requests, ties to the lowest index.",
    )
