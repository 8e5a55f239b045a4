"""Workloads that reproduce benchmark clients: inference-perf's shared_prefix load and
closed-loop clients (``vllm bench serve --max-concurrency``, InferenceX).

* **Shared prefix** (``shared_prefix_workload``): ``G`` system prompts times ``U`` questions
  make ``G x U`` distinct prompts.  inference-perf builds them group by group, shuffles the list
  once, and request number ``k`` of a stage sends prompt ``k mod (G x U)``; the numbering
  starts again at every stage.  Prompt ``(i, j)`` is ``extra + system i + question j`` tokens;
  its chain shares the first ``(extra + system) // block`` blocks with every question of group
  ``i`` and continues with blocks of its own, the same each time it is sent.
* **Stage arrivals** (``stage_arrivals``): stages run back to back from 0; within one, arrivals
  are evenly spaced, Poisson, or inference-perf's ConstantLoadTimer (``int(rate x duration)``
  exponential gaps rescaled to fill the stage).
* **Closed loop** (``closed_loop_workload``): client ``c`` of ``N`` sends rows ``c, c + N, ...``;
  the first ``N`` rows arrive at 0, each other row follows the row ``N`` before it with no
  think time (``Workload.follows``).

Pure functions of their arguments and the generators they are given.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.workload.request import Workload

__all__ = ["closed_loop_workload", "range_lengths", "shared_prefix_workload", "stage_arrivals", "stage_of"]


def stage_arrivals(stages: list[tuple[float, float]], process: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (s) of back-to-back ``(rate_rps, duration_s)`` stages, and each one's stage index.

    ``constant``: ``int(rate x duration)`` arrivals at ``start + k / rate``; ``inference_perf``:
    as many, at the cumulative sums of exponential gaps rescaled to sum to ``duration``;
    ``poisson``: exponential gaps from the start while inside the stage.
    """
    times, index = [], []
    start = 0.0
    for s, (rate, duration) in enumerate(stages):
        times.append(start + _stage_offsets(rate, duration, process, rng))
        index.append(np.full(len(times[-1]), s, np.int64))
        start += duration
    return np.concatenate(times), np.concatenate(index)


def _stage_offsets(rate: float, duration: float, process: str, rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets (s) within one stage, from its start."""
    if process == "poisson":
        offsets = []
        t = rng.exponential(1.0 / rate)
        while t < duration:
            offsets.append(t)
            t += rng.exponential(1.0 / rate)
        return np.asarray(offsets, np.float64)
    count = stage_requests(rate, duration)
    if process == "constant":
        return np.arange(count, dtype=np.float64) / rate
    gaps = rng.exponential(1.0 / rate, count)
    return np.cumsum(gaps * (duration / gaps.sum())) if count else np.zeros(0)


def stage_requests(rate: float, duration: float) -> int:
    """Requests one stage sends, ``int(rate x duration)`` (forgiving the product's rounding error)."""
    return int(math.floor(rate * duration + 1e-9))


def stage_of(arrival_s: np.ndarray, durations: list[float]) -> np.ndarray:
    """The stage index of each arrival time, stages ``durations`` long back to back from 0 (the last
    stage takes everything after its start)."""
    starts = np.cumsum([0.0, *durations[:-1]])
    return np.searchsorted(starts, np.asarray(arrival_s, np.float64), side="right") - 1


def shared_prefix_workload(
    arrival_s: np.ndarray,
    stage: np.ndarray,
    order: np.ndarray,
    *,
    num_groups: int,
    prompts_per_group: int,
    head_tokens: int,
    question_tokens: int,
    output_tokens: int,
    block_tokens: int,
    source: str,
) -> Workload:
    """Requests at ``arrival_s`` (sorted) sending the shuffled prompt list ``order`` (prompt ids
    ``i * prompts_per_group + j``) in turn, restarting at every new ``stage``; ``head_tokens`` is
    what group ``i``'s prompts share (the server's extra tokens and the system prompt)."""
    n = len(arrival_s)
    num_prompts = num_groups * prompts_per_group
    starts = np.flatnonzero(np.r_[True, stage[1:] != stage[:-1]]) if n else np.zeros(0, np.int64)
    first_of_stage = np.repeat(starts, np.diff(np.r_[starts, n]))
    prompt_id = order[(np.arange(n) - first_of_stage) % num_prompts]
    prompt = head_tokens + question_tokens
    shared = head_tokens // block_tokens
    own = -(-prompt // block_tokens) - shared
    chains_by_prompt = []
    for p in range(num_prompts):
        group = p // prompts_per_group
        head = tuple(group * shared + k for k in range(shared))
        base = num_groups * shared + p * own  # prompt p's own blocks follow every group's shared ones
        chains_by_prompt.append(head + tuple(range(base, base + own)))
    return Workload.from_arrays(
        arrival_s,
        np.full(n, prompt, np.int64),
        np.full(n, output_tokens, np.int64),
        prefix_block_ids=[chains_by_prompt[p] for p in prompt_id],
        prefix_block_size=block_tokens,
        source=source,
    )


def range_lengths(rng: np.random.Generator, n: int, longest: int, range_ratio: float) -> np.ndarray:
    """``n`` integer lengths uniform in ``[ceil(range_ratio x longest), longest]`` (all ``longest`` when 1)."""
    low = max(1, math.ceil(range_ratio * longest - 1e-9))
    if low >= longest:
        return np.full(n, longest, np.int64)
    return rng.integers(low, longest, size=n, endpoint=True, dtype=np.int64)


def closed_loop_workload(prompt_tokens: np.ndarray, output_tokens: np.ndarray, concurrency: int, source: str) -> Workload:
    """``len(prompt_tokens)`` requests from ``concurrency`` clients: row ``k`` is client
    ``k mod concurrency``'s; the first row of each client arrives at 0, the others follow the
    client's previous row at once (``think_s`` 0).  ``session_id`` is the client (as a string)."""
    n = len(prompt_tokens)
    rows = np.arange(n, dtype=np.int64)
    follows = np.where(rows >= concurrency, rows - concurrency, -1)
    return Workload.from_arrays(
        np.where(rows < concurrency, 0.0, np.inf),
        prompt_tokens,
        output_tokens,
        session_id=np.asarray([str(int(k % concurrency)) for k in rows], dtype=object),
        follows=follows,
        think_s=np.zeros(n),
        source=source,
    )
