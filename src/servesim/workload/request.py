"""The request model: one row per request, held column-wise.

A workload of millions of requests is a handful of numpy arrays rather than
millions of Python objects; the simulator reads a row only when its request
arrives.  ``Request`` is the row view, convenient for small hand-built
workloads in tests and examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class Request:
    """One request as a user writes it by hand.

    arrival_s: arrival time in seconds from the start of the run (>= 0).
    prompt_tokens: prompt length in tokens (>= 1).
    output_tokens: tokens to generate (>= 1); the first comes from prefill.
    priority: smaller is more urgent (used by the ``priority`` queue policy).
    session_id: conversation/agent id, or None.
    model: model or LoRA adapter name requested, or None.
    prefix_block_ids: ids of the prompt's prefix blocks (each id stands for
        its whole prefix), or empty when unknown.
    """

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    priority: int = 0
    session_id: str | None = None
    model: str | None = None
    prefix_block_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Workload:
    """A whole workload, sorted by arrival time, column-wise.

    Contract: all arrays have the same length ``n``; ``arrival_s`` is float64,
    non-decreasing and >= 0; ``prompt_tokens`` and ``output_tokens`` are int64
    and >= 1; ``priority`` is int64.  Optional columns are None or length n.
    ``prefix_block_ids`` (when present) is a list of int tuples and
    ``prefix_block_size`` the tokens per block.  ``difficulty`` (float64 in
[0, 1], for model routing) is None unless the workload config draws it.
``chunk_ids`` (RAG prompts: the retrieved chunks each prompt is built
from, ``chunk_tokens`` tokens each) is None unless configured.  ``skipped`` counts the source
    rows that were not turned into requests, by reason (e.g.
    ``{"zero_output_tokens": 12}``); ``source`` names where it came from.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    priority: np.ndarray
    session_id: np.ndarray | None = None
    model: np.ndarray | None = None
    prefix_block_ids: list[tuple[int, ...]] | None = None
    prefix_block_size: int | None = None
    difficulty: np.ndarray | None = None
    chunk_ids: list[tuple[int, ...]] | None = None
    chunk_tokens: int | None = None
    follows: np.ndarray | None = None
    think_s: np.ndarray | None = None
    adapter_ids: np.ndarray | None = None
    adapter_ranks: np.ndarray | None = None
    source: str = "unknown"
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @classmethod
    def from_arrays(
        cls,
        arrival_s: Sequence[float] | np.ndarray,
        prompt_tokens: Sequence[int] | np.ndarray,
        output_tokens: Sequence[int] | np.ndarray,
        priority: Sequence[int] | np.ndarray | None = None,
        **optional,
    ) -> "Workload":
        """Build a workload, sorting rows by arrival time (stable)."""
        arrival = np.asarray(arrival_s, dtype=np.float64)
        order = np.argsort(arrival, kind="stable")
        prio = np.zeros(len(arrival), np.int64) if priority is None else np.asarray(priority, np.int64)
        sort = lambda a: None if a is None else np.asarray(a, dtype=object if np.asarray(a).dtype.kind in "OU" else None)[order]
        blocks = optional.pop("prefix_block_ids", None)
        difficulty = optional.pop("difficulty", None)
        if difficulty is not None:
            difficulty = np.asarray(difficulty, np.float64)[order]
        follows = optional.pop("follows", None)
        if follows is not None:
            # Row numbers change with the sort: point each follower at its predecessor's new row.
            new_row = np.empty(len(order), np.int64)
            new_row[order] = np.arange(len(order))
            old = np.asarray(follows, np.int64)[order]
            follows = np.where(old >= 0, new_row[np.maximum(old, 0)], -1)
            optional["think_s"] = np.asarray(optional["think_s"], np.float64)[order]
        if blocks is not None:
            blocks = [tuple(blocks[i]) for i in order]
        return cls(
            arrival_s=arrival[order],
            prompt_tokens=np.asarray(prompt_tokens, np.int64)[order],
            output_tokens=np.asarray(output_tokens, np.int64)[order],
            priority=prio[order],
            session_id=sort(optional.pop("session_id", None)),
            model=sort(optional.pop("model", None)),
            prefix_block_ids=blocks,
            difficulty=difficulty,
            follows=follows,
            **optional,
        )

    @classmethod
    def from_requests(cls, requests: Sequence[Request], source: str = "requests") -> "Workload":
        """Build a workload from hand-written ``Request`` rows."""
        has = lambda attr: any(getattr(r, attr) for r in requests)
        return cls.from_arrays(
            [r.arrival_s for r in requests],
            [r.prompt_tokens for r in requests],
            [r.output_tokens for r in requests],
            [r.priority for r in requests],
            session_id=[r.session_id for r in requests] if has("session_id") else None,
            model=[r.model for r in requests] if has("model") else None,
            prefix_block_ids=[r.prefix_block_ids for r in requests] if has("prefix_block_ids") else None,
            source=source,
        )

    def take(self, index: np.ndarray) -> "Workload":
        """The rows at ``index`` (ascending positions or a boolean mask), same metadata.

        Ascending positions keep the arrival order, so the result honours
        the contract without re-sorting.
        """
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if self.follows is not None:
            raise ValueError("a closed-loop workload (agent programs) cannot be cut by rows; select whole programs")
        pick = lambda a: None if a is None else a[index]
        return Workload(
            arrival_s=self.arrival_s[index],
            prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index],
            priority=self.priority[index],
            session_id=pick(self.session_id),
            model=pick(self.model),
            prefix_block_ids=None if self.prefix_block_ids is None else [self.prefix_block_ids[i] for i in index],
            prefix_block_size=self.prefix_block_size,
            difficulty=pick(self.difficulty),
            chunk_ids=None if self.chunk_ids is None else [self.chunk_ids[i] for i in index],
            adapter_ids=pick(self.adapter_ids),
            adapter_ranks=self.adapter_ranks,
            chunk_tokens=self.chunk_tokens,
            source=self.source,
            skipped=dict(self.skipped),
        )

    def request(self, i: int) -> Request:
        """Row ``i`` as a ``Request``."""
        return Request(
            arrival_s=float(self.arrival_s[i]),
            prompt_tokens=int(self.prompt_tokens[i]),
            output_tokens=int(self.output_tokens[i]),
            priority=int(self.priority[i]),
            session_id=None if self.session_id is None else self.session_id[i],
            model=None if self.model is None else self.model[i],
            prefix_block_ids=() if self.prefix_block_ids is None else self.prefix_block_ids[i],
        )
