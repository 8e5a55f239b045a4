"""The row power budget section of a scenario (``cluster.power.row``); the controller is in ``power_budget``.

Kept apart from the controller so that the scenario's schema holds no simulation code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RowPowerConfig(BaseModel):
    """A row of servers under one power budget, oversubscribed, with a capping controller (POLCA;
    docs/operations.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    budget_w: float | None = Field(
        None, gt=0, description="The row's power budget (W); give this or budget_servers."
    )
    budget_servers: float | None = Field(
        None,
        gt=0,
        description=(
            "The row's power budget as servers provisioned at nameplate (count): budget_w = budget_servers x "
            "(gpus_per_server x the GPU's TDP + server_other_w; mixed pools: the first pool's GPU); give this or budget_w."
        ),
    )
    gpus_per_server: int = Field(
        8, ge=1, description="GPUs per server (count): the fleet's GPUs fill servers in replica order."
    )
    server_other_w: float = Field(
        0.0, ge=0, description="Constant power of a server's parts other than its GPUs (CPUs, fans, NICs), per server (W)."
    )
    policy: Literal["polca", "monitor"] = Field(
        "polca",
        description=(
            "'polca': cap every GPU while the row's draw is high (thresholds below); 'monitor': sample the draw "
            "and never cap (what the oversubscription risks uncapped)."
        ),
    )
    interval_s: float = Field(1.0, gt=0, description="How often the controller reads the row's draw (s).")
    cap_threshold: float = Field(
        0.95, gt=0, description="Cap when a reading exceeds this share of the budget (fraction)."
    )
    uncap_threshold: float = Field(
        0.85, gt=0, description="Uncap when a reading falls below this share of the budget (fraction; below cap_threshold)."
    )
    capped_gpu_w: float | None = Field(
        None,
        gt=0,
        description="Power cap of every GPU while capping (W; a locked, lower clock by the cube law); needed by 'polca'.",
    )
    hard_threshold: float | None = Field(
        None,
        gt=0,
        description="A second, harder level: cap at hard_gpu_w when a reading exceeds this share of the budget "
        "(fraction; above cap_threshold); null: one level.",
    )
    hard_gpu_w: float | None = Field(
        None, gt=0, description="Power cap of every GPU at the hard level (W; below capped_gpu_w)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "RowPowerConfig":
        if (self.budget_w is None) == (self.budget_servers is None):
            raise ValueError(
                f"give exactly one of budget_w and budget_servers (got budget_w={self.budget_w}, "
                f"budget_servers={self.budget_servers})"
            )
        if self.uncap_threshold >= self.cap_threshold:
            raise ValueError(
                f"uncap_threshold={self.uncap_threshold} must be below cap_threshold={self.cap_threshold} (hysteresis)"
            )
        if self.policy == "polca" and self.capped_gpu_w is None:
            raise ValueError("policy='polca' needs capped_gpu_w, the per-GPU cap while capping (W)")
        if (self.hard_threshold is None) != (self.hard_gpu_w is None):
            raise ValueError(
                f"hard_threshold={self.hard_threshold} and hard_gpu_w={self.hard_gpu_w}: give both or neither"
            )
        if self.hard_threshold is not None:
            if self.hard_threshold <= self.cap_threshold:
                raise ValueError(
                    f"hard_threshold={self.hard_threshold} must be above cap_threshold={self.cap_threshold}"
                )
            if self.capped_gpu_w is not None and self.hard_gpu_w >= self.capped_gpu_w:
                raise ValueError(f"hard_gpu_w={self.hard_gpu_w} must be below capped_gpu_w={self.capped_gpu_w}")
        return self
