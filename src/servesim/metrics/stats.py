"""Distribution statistics that are safe to put in JSON."""

from __future__ import annotations

import math

import numpy as np

#: Percentiles reported for every latency distribution.
PERCENTILES = (50, 90, 99)


def json_float(x: float | np.floating | None) -> float | None:
    """``x`` as a Python float, or None when it is None, NaN or infinite.

    JSON has no NaN or infinity, so "no value" is always written as null.
    """
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ratio(num: float, den: float | None) -> float | None:
    """``num / den`` as a JSON-safe float; None when ``den`` is None or <= 0."""
    if den is None or not den > 0:
        return None
    return json_float(num / den)


def describe(values: np.ndarray) -> dict[str, float | int | None]:
    """Summary of a sample, ignoring NaNs.

    Returns ``{"count", "mean", "p50", "p90", "p99", "max"}`` in the units of
    ``values``.  Percentiles use numpy's default ``linear`` method (type 7 in
    Hyndman & Fan: the ``q``-th percentile of ``n`` sorted values sits at
    position ``(n - 1) * q / 100``, interpolating between neighbours).  With
    no finite value, ``count`` is 0 and every statistic is None.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"count": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    pct = linear_percentiles(v, PERCENTILES)
    return {
        "count": int(v.size),
        "mean": json_float(v.mean()),
        **{f"p{p}": json_float(q) for p, q in zip(PERCENTILES, pct)},
        "max": json_float(v.max()),
    }


def linear_percentiles(values: np.ndarray, percentiles: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, percentiles)`` (method ``linear``), bit for bit, for a 1-D
    float64 array without NaN.

    The same steps as numpy's: virtual index ``(n - 1) * q``, a partition
    around the neighbouring ranks, and numpy's two-sided ``lerp`` (from the
    upper neighbour when the fraction is at least 0.5).  Written out because
    numpy's version imports ``numpy.ma`` on first use (via ``np.unique``),
    which costs a short run more than all its percentiles.
    """
    n = values.size
    ranks = []
    for p in percentiles:
        virtual = (n - 1) * (p / 100)
        below = int(math.floor(virtual))
        ranks.append((virtual, below, min(below + 1, n - 1)))
    kth = sorted({0, n - 1, *(r[1] for r in ranks), *(r[2] for r in ranks)})
    part = np.partition(values, kth)
    out = []
    for virtual, below, above in ranks:
        a, b = float(part[below]), float(part[above])
        gamma = virtual - below
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return out
