"""A benchmark client's metrics from one run's request table.

Over the requests that finished (latencies in milliseconds):

* ``ttft_ms``: first token time minus arrival (the client's send time);
* ``e2e_ms``: finish (last token) minus arrival;
* ``tpot_ms``: per request ``(e2e - ttft) / (output tokens - 1)``, requests with
  one output token left out (as ``vllm bench serve`` computes it);
* ``mean``, ``p50``, ``p90``, ``p99``: numpy's mean and linearly interpolated
  percentiles over those requests;
* ``output_tokens_per_s`` and ``requests_per_s``: output tokens and requests
  finished over the span from the first arrival to the last finish;
* ``num_finished``, and ``num_rejected`` (requests no replica could ever hold).

A metric with no request to average over is NaN.  A pure function of the table.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.metrics.records import FINISHED, REJECTED, RequestTable

__all__ = ["METRICS", "bench_metrics"]

METRICS = (
    "ttft_ms_mean",
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "tpot_ms_mean",
    "tpot_ms_p50",
    "e2e_ms_mean",
    "e2e_ms_p50",
    "e2e_ms_p90",
    "e2e_ms_p99",
    "output_tokens_per_s",
    "requests_per_s",
    "num_finished",
    "num_rejected",
)


def bench_metrics(requests: RequestTable) -> dict[str, float]:
    """Every metric of ``METRICS`` for the run ``requests`` records (see the module doc)."""
    done = requests.status == FINISHED
    arrival = requests.arrival_s[done]
    ttft = (requests.first_token_s[done] - arrival) * 1e3
    e2e = (requests.finish_s[done] - arrival) * 1e3
    tokens = requests.tokens_generated[done]
    several = tokens > 1
    tpot = (e2e[several] - ttft[several]) / (tokens[several] - 1)
    out: dict[str, float] = {}
    for name, values, stats in (("ttft_ms", ttft, ("mean", 50, 90, 99)), ("tpot_ms", tpot, ("mean", 50)),
                                ("e2e_ms", e2e, ("mean", 50, 90, 99))):
        for stat in stats:
            key = f"{name}_mean" if stat == "mean" else f"{name}_p{stat}"
            out[key] = _stat(values, stat)
    seen = np.isfinite(requests.arrival_s)
    span = float(requests.finish_s[done].max() - requests.arrival_s[seen].min()) if done.any() else math.nan
    finished = int(done.sum())
    out["output_tokens_per_s"] = float(tokens.sum()) / span if span > 0 else math.nan
    out["requests_per_s"] = finished / span if span > 0 else math.nan
    out["num_finished"] = float(finished)
    out["num_rejected"] = float(np.count_nonzero(requests.status == REJECTED))
    return out


def _stat(values: np.ndarray, stat: str | int) -> float:
    if values.size == 0:
        return math.nan
    return float(values.mean()) if stat == "mean" else float(np.percentile(values, stat))
