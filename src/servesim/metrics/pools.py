"""Per-pool results of a heterogeneous cluster (``cluster.pools``).

The requests table names each request's replica; a pool is a contiguous
range of replicas (``PoolProfile.first`` / ``count``).  Quality and model
cost count finished requests only:

* ``mean_quality``: the mean, over finished requests, of the expected
  quality of the pool that served each at its difficulty (None without
  difficulties), plus the request's ``quality_bonus`` (IC-Cache examples),
  capped at 1;
* ``model_cost_usd``: the sum over finished requests of (prompt + output
  tokens) x the pool's ``price_usd_per_mtok`` / 1e6, the price a model
  router weighs; ``model_cost_per_request_usd`` its mean.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from servesim.metrics.records import FINISHED, RequestTable
from servesim.metrics.stats import json_float, ratio


def pool_summary(
    requests: RequestTable, pools: Sequence[Any], difficulty: np.ndarray | None, quality_bonus: np.ndarray | None = None
) -> dict[str, Any]:
    """``mean_quality``, ``model_cost_usd``, ``model_cost_per_request_usd`` and ``pools`` (per pool:
    replicas, finished requests, their mean quality, price per million tokens)."""
    finished = requests.status == FINISHED
    quality = np.full(len(requests.request_id), np.nan)
    cost = 0.0
    per_pool: dict[str, Any] = {}
    for pool in pools:
        here = finished & (requests.replica >= pool.first) & (requests.replica < pool.first + pool.count)
        tokens = int(requests.prompt_tokens[here].sum() + requests.tokens_generated[here].sum())
        cost += tokens * pool.price_usd_per_mtok / 1e6
        if difficulty is not None:
            rows = np.flatnonzero(here)
            ids = requests.request_id[rows]
            quality[rows] = [pool.quality(float(difficulty[i])) for i in ids]
            if quality_bonus is not None:
                quality[rows] = np.minimum(1.0, quality[rows] + quality_bonus[ids])
        served = quality[here]
        per_pool[pool.name] = {
            "replicas": int(pool.count),
            "requests_finished": int(here.sum()),
            "mean_quality": json_float(float(served.mean())) if difficulty is not None and served.size else None,
            "price_usd_per_mtok": json_float(pool.price_usd_per_mtok),
        }
    num_finished = int(finished.sum())
    mean_quality = None
    if difficulty is not None and num_finished:
        mean_quality = json_float(float(np.nanmean(quality[finished])))
    return {
        "mean_quality": mean_quality,
        "model_cost_usd": json_float(cost),
        "model_cost_per_request_usd": ratio(cost, num_finished),
        "pools": per_pool,
    }
