"""The ``fleet`` section of a run's summary and its fleet time series (fleet operations).

Over the span (first arrival to last finish, or the horizon), from the fleet's books
(``servesim.cluster.fleet``):

* ``replicas``: mean provisioned (paid) replicas and GPUs, the peak, and the
  mean of the samples' active replicas (with elastic scaling, peak and active
  count units of the smallest size);
* ``scale_ups``, ``scale_downs``, ``cold_starts`` and one cold start's seconds;
* ``failures`` (replicas taken down; ``node_failures``: node events that took any down), ``availability`` (share of the
  replicas' started time they could serve), ``retried_requests``, ``retries``,
  ``failed_requests`` and ``lost_tokens`` (output tokens recomputed);
  ``slo_lost_requests`` (failed, or retried and then missing the SLO) and
  ``goodput_lost_rps`` (those over the span) are added by ``servesim.api``;
* with disturbances: stragglers, link degradation episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.metrics.stats import json_float, ratio


def fleet_summary(fleet, disturbances, start_s: float, end_s: float, cold_start_s: float, load_s: float,
                  policy_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if fleet is not None:
        books = fleet.books
        span = end_s - start_s
        paid = sum(fleet.replica_seconds(end_s))
        samples = fleet.samples
        out = {
            "policy": policy_name,
            "replicas": {
                "mean_provisioned": ratio(paid, span),
                "peak_provisioned": max((s.active + s.starting + s.draining + s.down for s in samples), default=0),
                "mean_active": json_float(np.mean([s.active for s in samples])) if samples else None,
                "mean_gpus_provisioned": ratio(sum(fleet.gpu_seconds(end_s)), span),
            },
            "scale_ups": books.scale_ups,
            "scale_downs": books.scale_downs,
            "cold_starts": books.cold_starts,
            "cold_start_s": json_float(cold_start_s),
            "weight_load_s": json_float(load_s),
            "failures": books.failures,
            "node_failures": books.node_failures,
            "availability": json_float(fleet.availability(end_s)),
            "retried_requests": books.retried_requests,
            "retries": books.retries,
            "failed_requests": books.failed_requests,
            "lost_tokens": books.lost_tokens,
        }
        policy = fleet.policy
        if policy is not None and hasattr(policy, "panics"):
            out["kpa_panics"] = policy.panics
        if policy is not None and hasattr(policy, "trace"):
            targets = [t for _, t in policy.trace]
            out["rl"] = {
                "trained_episodes": len(policy.episode_rewards) if policy.episodic else None,
                "decisions": len(targets),
                "mean_target": json_float(np.mean(targets)) if targets else None,
                "final_target": json_float(targets[-1]) if targets else None,
            }
        elastic = fleet.elastic
        if elastic is not None:
            out["elastic"] = {
                "grows": elastic.grows,
                "shrinks": elastic.shrinks,
                "mean_grow_s": json_float(np.mean(elastic.grow_s)) if elastic.grow_s else None,
            }
    if disturbances is not None:
        out["stragglers"] = sum(1 for f in disturbances.straggler_factor if f != 1.0)
        out["link_degradation_episodes"] = disturbances.num_link_episodes
    return out


def goodput_lost(retried_ids: list[int], requests, slo, span_s: float) -> dict[str, Any]:
    """Requests the failures cost their SLO: those failed, and those retried that then missed it."""
    from servesim.metrics.records import FAILED
    from servesim.metrics.slo import slo_met

    retried = np.zeros(len(requests), dtype=bool)
    retried[np.searchsorted(requests.request_id, np.asarray(retried_ids, dtype=np.int64))] = True
    lost = int((retried & ~slo_met(requests, slo)).sum()) + int((requests.status == FAILED).sum())
    return {"slo_lost_requests": lost, "goodput_lost_rps": ratio(lost, span_s)}


def fleet_series_columns(fleet) -> dict[str, np.ndarray]:
    """The fleet's samples as columns (written to fleet_timeseries.parquet)."""
    samples = fleet.samples
    names = ("time_s", "active", "starting", "draining", "down", "concurrency", "waiting", "busy_s", "gpus")
    return {name: np.array([getattr(s, name) for s in samples]) for name in names}
