"""Pure operations that reshape a workload: window, rate scaling, sampling, truncation.

Each takes a ``Workload`` and returns a new one (inputs are never changed).
Requests an operation leaves out are added to ``skipped`` under its own
reason, so the final workload still accounts for every source row:

    outside_window     arrival outside [start, end)
    sampled_out        not drawn by ``sample``
    over_max_requests  beyond the first ``max_requests``
"""

from __future__ import annotations

import dataclasses

import numpy as np

from servesim.workload.request import Workload


def _with_skipped(workload: Workload, reason: str, count: int) -> Workload:
    if count == 0:
        return workload
    skipped = dict(workload.skipped)
    skipped[reason] = skipped.get(reason, 0) + count
    return dataclasses.replace(workload, skipped=skipped)


def window(workload: Workload, start_s: float | None, end_s: float | None) -> Workload:
    """Keep arrivals in ``[start_s, end_s)`` and shift them so ``start_s`` becomes 0.

    None means unbounded on that side (a start of None is 0).  Times are the
    workload's own, i.e. seconds after its first arrival for a trace.
    """
    start = 0.0 if start_s is None else float(start_s)
    t = workload.arrival_s
    keep = t >= start
    if end_s is not None:
        keep &= t < end_s
    kept = workload.take(keep)
    kept = dataclasses.replace(kept, arrival_s=kept.arrival_s - start)
    return _with_skipped(kept, "outside_window", len(workload) - len(kept))


def scale_rate(workload: Workload, factor: float) -> Workload:
    """Divide every arrival time by ``factor`` (> 0): 2.0 doubles the arrival rate."""
    if not factor > 0:
        raise ValueError(f"rate scale factor must be > 0, got {factor}")
    if factor == 1.0:
        return workload
    return dataclasses.replace(workload, arrival_s=workload.arrival_s / factor)


def sample(workload: Workload, fraction: float, rng: np.random.Generator) -> Workload:
    """Keep each request independently with probability ``fraction`` (0 < f <= 1).

    One uniform draw per request, in arrival order, so the same generator
    state keeps the same requests.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"sample fraction must be in (0, 1], got {fraction}")
    keep = rng.random(len(workload)) < fraction
    kept = workload.take(keep)
    return _with_skipped(kept, "sampled_out", len(workload) - len(kept))


def truncate(workload: Workload, max_requests: int | None) -> Workload:
    """Keep the first ``max_requests`` requests by arrival (None = all)."""
    if max_requests is None or len(workload) <= max_requests:
        return workload
    kept = workload.take(np.arange(max_requests))
    return _with_skipped(kept, "over_max_requests", len(workload) - max_requests)
