"""Configuration of a replica's batch scheduler."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SchedulerConfig(BaseModel):
    """Continuous batching with a token budget, like vLLM's v1 scheduler."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_num_seqs: int = Field(
        256,
        ge=1,
        description=(
            "Most sequences in one running batch (count).  Left unset in a scenario: the engine's default on its "
            "GPU (vllm serve: 1024 on GPUs of 70 GiB or more other than the A100, else 256; pytorch: 256)."
        ),
    )
    max_num_batched_tokens: int = Field(
        8192,
        ge=1,
        description=(
            "Token budget of one iteration: new tokens computed across all sequences (tokens).  Left unset in a "
            "scenario: the engine's default on its GPU (vllm serve: 8192 on H100/H200, 16384 on GPUs of 160 GiB "
            "or more, 2048 on A100 and smaller; pytorch: 8192)."
        ),
    )
    chunked_prefill: bool = Field(
        True, description="Split a prompt over several iterations when it exceeds the remaining token budget."
    )
    policy: Literal["fcfs", "priority", "laps"] = Field(
        "fcfs",
        description=(
            "Waiting-queue order: 'fcfs' by arrival; 'priority' by request priority (smaller first), then arrival; "
            "'laps': LAPS's dual queue on one instance, short prompts (<= laps_threshold_tokens) first, a long "
            "prompt before any short one that arrived more than laps_max_wait_s after it."
        ),
    )
    laps_threshold_tokens: int = Field(256, ge=1, description="'laps': prompts up to this long are short (tokens).")
    laps_max_wait_s: float = Field(
        1.0, ge=0, description="'laps': how far a long prompt lets later short prompts pass it (s); bounds its wait."
    )

    @model_validator(mode="after")
    def _budget_covers_batch(self) -> "SchedulerConfig":
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_num_seqs "
                f"({self.max_num_seqs}) so that every running sequence can decode in one iteration"
            )
        return self
