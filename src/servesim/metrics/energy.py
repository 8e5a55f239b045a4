"""A run's energy and what its capacity cost, from the replicas' busy time by phase.

Over the run's span (first arrival to last finish) each replica was busy in
steps with prompt tokens, busy in pure decode, or idle; its GPUs drew the
matching power (``servesim.perf.power``).  ``energy_j`` sums that over the
fleet; ``energy_per_token_j`` divides by the output tokens of finished
requests; ``power_w.mean`` is the fleet's mean draw.  ``cost_usd`` is the
fleet's GPU-hours at their price (as in ``cost``), ``cost_per_million_tokens_usd``
per million prompt and output tokens of finished requests, and
``idle_cost_usd`` the share of it paid for GPU time spent idle.
"""

from __future__ import annotations

from typing import Any, Sequence

from servesim.metrics.stats import json_float, ratio


def energy_summary(
    busy_prefill_s: Sequence[float],
    busy_s: Sequence[float],
    gpus: Sequence[int],
    powers: Sequence[Any],
    span_s: float | None,
    output_tokens: int,
    tokens: int,
    cost_usd: float | None,
    replica_spans_s: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The energy and cost keys of the summary (see the module doc); None where undefined.

    ``replica_spans_s``: each replica's own provisioned seconds within the span, when
    replicas come and go (fleet operations); by default each lives the whole span.
    """
    if span_s is None:
        return {"energy_j": None, "energy_per_token_j": None, "power_w": {"mean": None}, "cost_usd": cost_usd,
                "cost_per_million_tokens_usd": None, "idle_cost_usd": None}
    energy = 0.0
    gpu_s = idle_gpu_s = 0.0
    spans = replica_spans_s if replica_spans_s is not None else [span_s] * len(busy_s)
    for prefill, busy, n, power, life in zip(busy_prefill_s, busy_s, gpus, powers, spans):
        busy = min(busy, life)
        prefill = min(prefill, busy)
        idle = life - busy
        energy += power.energy_j(n, prefill, busy - prefill, idle)
        gpu_s += n * life
        idle_gpu_s += n * idle
    return {
        "energy_j": json_float(energy),
        "energy_per_token_j": ratio(energy, output_tokens),
        "power_w": {"mean": ratio(energy, span_s)},
        "cost_usd": cost_usd,
        "cost_per_million_tokens_usd": None if cost_usd is None else ratio(cost_usd, tokens / 1e6),
        "idle_cost_usd": None if cost_usd is None else ratio(cost_usd * idle_gpu_s, gpu_s),
    }
