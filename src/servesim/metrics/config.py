"""Service-level objectives, as written under ``slo:`` in a scenario."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SloTargets(BaseModel):
    """Latency targets a request must meet to count towards goodput.

    A request meets the SLO when it finished and each target that is set
    holds, inclusively (``value <= target``).  A request that produced a
    single token meets any ``tpot_s`` target (it has no decode phase).
    With no target set, every finished request meets the SLO.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    ttft_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Largest acceptable time to first token, in seconds.",
    )
    tpot_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Largest acceptable mean time per output token after the first, in seconds per token.",
    )
    e2e_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Largest acceptable end-to-end latency (arrival to last token), in seconds.",
    )

    @property
    def any_set(self) -> bool:
        """True when at least one target is set."""
        return self.ttft_s is not None or self.tpot_s is not None or self.e2e_s is not None
