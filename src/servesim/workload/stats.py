"""Summary statistics of a workload, as plain JSON-ready values, and their text form."""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.workload.request import Workload

PEAK_WINDOW_S = 60.0


def trace_stats(workload: Workload) -> dict[str, Any]:
    """Describe a workload; every value is a plain int, float, str, None, dict or list.

    Keys:
      source, num_requests, skipped (rows left out, by reason), num_skipped;
      span_s: last arrival minus first, seconds;
      mean_rate_rps: 1 / mean inter-arrival gap = (n - 1) / span_s, None if span is 0;
      peak_rate_rps_60s: most arrivals in any 60 s window [t, t + 60), divided by 60;
      interarrival_cv: std / mean of the gaps (population std), None with < 2 gaps or mean 0;
      prompt_tokens, output_tokens: {mean, p50, p90, p99, max} (percentiles interpolated linearly);
      num_sessions / requests_by_model when those columns exist;
      with prefix blocks: prefix_block_size, num_prefix_blocks, num_unique_prefix_blocks and
      prefix_reuse_fraction = share of block occurrences whose id appeared earlier in the
      workload (the hit rate of an unlimited prefix cache).
    """
    n = len(workload)
    t = workload.arrival_s
    span = float(t[-1] - t[0]) if n else 0.0
    out: dict[str, Any] = {
        "source": workload.source,
        "num_requests": n,
        "skipped": {k: int(v) for k, v in sorted(workload.skipped.items())},
        "num_skipped": int(sum(workload.skipped.values())),
        "span_s": span,
        "mean_rate_rps": (n - 1) / span if span > 0 else None,
        "peak_rate_rps_60s": _peak_rate(t, PEAK_WINDOW_S),
        "interarrival_cv": _cv(np.diff(t)),
        "prompt_tokens": _summary(workload.prompt_tokens),
        "output_tokens": _summary(workload.output_tokens),
    }
    if workload.session_id is not None:
        out["num_sessions"] = len({s for s in workload.session_id if s is not None})
    if workload.model is not None:
        names, counts = np.unique(np.array([str(m) for m in workload.model]), return_counts=True)
        out["requests_by_model"] = {str(k): int(c) for k, c in zip(names, counts)}
    if workload.prefix_block_ids is not None:
        out.update(_prefix_stats(workload))
    return out


def _peak_rate(t: np.ndarray, window_s: float) -> float | None:
    if len(t) == 0:
        return None
    # The busiest window can always be slid to start at an arrival, so
    # checking windows [t_i, t_i + w) for every i finds the maximum.
    ends = np.searchsorted(t, t + window_s, side="left")
    return float(np.max(ends - np.arange(len(t)))) / window_s


def _cv(gaps: np.ndarray) -> float | None:
    if len(gaps) < 2 or gaps.mean() <= 0:
        return None
    return float(gaps.std() / gaps.mean())


def _summary(values: np.ndarray) -> dict[str, float | int | None]:
    if len(values) == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": int(values.max())}


def _prefix_stats(workload: Workload) -> dict[str, Any]:
    blocks = workload.prefix_block_ids
    total = sum(len(b) for b in blocks)
    # An occurrence is a reuse unless it is its id's first appearance, so
    # reuses = occurrences - distinct ids, whatever the order.
    unique = len(np.unique(np.fromiter((i for b in blocks for i in b), dtype=np.int64, count=total)))
    return {
        "prefix_block_size": workload.prefix_block_size,
        "num_prefix_blocks": total,
        "num_unique_prefix_blocks": unique,
        "prefix_reuse_fraction": (total - unique) / total if total else None,
    }


# --------------------------------------------------------------------------- text


def _num(x: float | int | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def _lengths_line(s: dict[str, Any]) -> str:
    return "  ".join(f"{k} {_num(s[k])}" for k in ("mean", "p50", "p90", "p99", "max"))


def format_trace_stats(stats: dict[str, Any]) -> str:
    """``trace_stats`` output as aligned, human-readable lines."""
    skipped = ", ".join(f"{k} {_num(v)}" for k, v in stats["skipped"].items()) or "none"
    rows = [
        ("source", stats["source"]),
        ("requests", f"{_num(stats['num_requests'])} (skipped: {skipped})"),
        ("span", f"{_num(stats['span_s'])} s"),
        ("mean rate", f"{_num(stats['mean_rate_rps'], 3)} req/s"),
        ("peak rate (60 s)", f"{_num(stats['peak_rate_rps_60s'], 3)} req/s"),
        ("inter-arrival cv", _num(stats["interarrival_cv"], 3)),
        ("prompt tokens", _lengths_line(stats["prompt_tokens"])),
        ("output tokens", _lengths_line(stats["output_tokens"])),
    ]
    if "num_sessions" in stats:
        rows.append(("sessions", _num(stats["num_sessions"])))
    if "requests_by_model" in stats:
        rows.append(("models", ", ".join(f"{k} {_num(v)}" for k, v in stats["requests_by_model"].items())))
    if "prefix_reuse_fraction" in stats:
        frac = stats["prefix_reuse_fraction"]
        reuse = "n/a" if frac is None else f"{frac:.1%}"
        rows.append(
            (
                "prefix reuse",
                f"{reuse} of {_num(stats['num_prefix_blocks'])} blocks of {stats['prefix_block_size']} tokens "
                f"({_num(stats['num_unique_prefix_blocks'])} distinct)",
            )
        )
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
