"""Pure random generators for synthetic workloads.

Every function takes the ``numpy.random.Generator`` to draw from and returns
a fresh array; none keeps state, so the same generator state gives the same
draws.  Lengths are int64 token counts >= 1; gaps and times are float64
seconds.
"""

from __future__ import annotations

import numpy as np


def poisson_gaps(rng: np.random.Generator, n: int, rate_rps: float) -> np.ndarray:
    """``n`` exponential inter-arrival gaps with mean ``1 / rate_rps`` seconds."""
    _check_rate(rate_rps)
    return rng.exponential(1.0 / rate_rps, size=n)


def gamma_gaps(rng: np.random.Generator, n: int, rate_rps: float, cv: float) -> np.ndarray:
    """``n`` gamma inter-arrival gaps with mean ``1 / rate_rps`` s and coefficient of variation ``cv``.

    A gamma with shape k has cv = 1/sqrt(k), so k = 1/cv^2; the scale
    1/(rate * k) keeps the mean at 1/rate.  cv = 1 is the Poisson process.
    """
    _check_rate(rate_rps)
    if not cv > 0:
        raise ValueError(f"cv must be > 0, got {cv}")
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / (rate_rps * shape), size=n)


def constant_gaps(n: int, rate_rps: float) -> np.ndarray:
    """``n`` equal gaps of ``1 / rate_rps`` seconds (no randomness)."""
    _check_rate(rate_rps)
    return np.full(n, 1.0 / rate_rps)


def arrivals_from_gaps(gaps: np.ndarray) -> np.ndarray:
    """Arrival times with the first request at 0: ``t[i] = gaps[0] + ... + gaps[i-1]``.

    Starting at 0 (rather than after one gap) matches trace replay, where
    the first arrival is also at 0; the last gap is not used.
    """
    out = np.zeros(len(gaps), dtype=np.float64)
    if len(gaps) > 1:
        np.cumsum(gaps[:-1], out=out[1:])
    return out


def apply_rate_schedule(arrivals: np.ndarray, schedule: list[tuple[float, float]]) -> np.ndarray:
    """Arrival times of the same process under a time-varying rate: ``rate x m(t)`` with ``m``
    piecewise constant (``schedule``: (start s, multiplier), the first at 0).

    The process's own times are read as operational time ``M(t) = integral of m``; each arrival
    moves to ``M^-1`` of it (a time change: Poisson stays Poisson at rate ``rate x m(t)``).
    """
    starts = np.array([t for t, _ in schedule], dtype=np.float64)
    mult = np.array([m for _, m in schedule], dtype=np.float64)
    # Operational time at each segment start.
    op_starts = np.concatenate(([0.0], np.cumsum(np.diff(starts) * mult[:-1])))
    seg = np.searchsorted(op_starts, arrivals, side="right") - 1
    return starts[seg] + (arrivals - op_starts[seg]) / mult[seg]


def fixed_lengths(n: int, value: int) -> np.ndarray:
    """``n`` copies of ``value`` tokens."""
    return np.full(n, value, dtype=np.int64)


def uniform_lengths(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """``n`` integers drawn uniformly from ``low..high`` inclusive."""
    return rng.integers(low, high, size=n, endpoint=True, dtype=np.int64)


def lognormal_lengths(rng: np.random.Generator, n: int, median: float, sigma: float) -> np.ndarray:
    """``n`` lognormal lengths with the given median, rounded to integers and raised to >= 1.

    ``sigma`` is the standard deviation of ln(length); the median of a
    lognormal is exp(mu), hence mu = ln(median).
    """
    draws = rng.lognormal(np.log(median), sigma, size=n)
    return np.maximum(np.rint(draws), 1).astype(np.int64)


def empirical_lengths(rng: np.random.Generator, n: int, pool: np.ndarray) -> np.ndarray:
    """``n`` values drawn with replacement, uniformly, from ``pool``."""
    if len(pool) == 0:
        raise ValueError("cannot resample an empty pool of lengths")
    return np.asarray(pool, dtype=np.int64)[rng.integers(0, len(pool), size=n)]


def clip_lengths(lengths: np.ndarray, low: int | None, high: int | None) -> np.ndarray:
    """``lengths`` clipped to ``[low, high]`` (either bound may be None) and to >= 1."""
    lo = 1 if low is None else max(1, low)
    return np.clip(lengths, lo, high).astype(np.int64)


def _check_rate(rate_rps: float) -> None:
    if not rate_rps > 0:
        raise ValueError(f"rate_rps must be > 0, got {rate_rps}")
