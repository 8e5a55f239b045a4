"""servesim's percentiles equal numpy's (method ``linear``) bit for bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from servesim.metrics.stats import PERCENTILES, describe, linear_percentiles

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.integers(1, 400), elements=finite))
def test_linear_percentiles_equal_numpy(values):
    qs = (0, 1, 25, 50, 90, 99, 99.9, 100)
    expected = np.percentile(values, qs)
    got = linear_percentiles(values.copy(), qs)
    assert [float(x) for x in expected] == got


def test_hand_computed_percentiles():
    # Sorted: 1 2 3 5 10.  p50 sits on rank 2 (3.0); p90 at rank 4 * 0.9 = 3.6, between 5 and 10,
    # taken from the upper neighbour (fraction >= 0.5): 10 - 5 * 0.4 = 8; p99 at 3.96: 10 - 5 * 0.04 = 9.8.
    v = np.array([5.0, 1.0, 3.0, 2.0, 10.0])
    p50, p90, p99 = linear_percentiles(v, (50, 90, 99))
    assert p50 == 3.0
    assert p90 == 10.0 - 5.0 * (1 - (4 * 0.9 - 3)) and abs(p90 - 8.0) < 1e-12
    assert p99 == 10.0 - 5.0 * (1 - (4 * 0.99 - 3)) and abs(p99 - 9.8) < 1e-12
    assert describe(v)["p50"] == 3.0 and describe(v)["max"] == 10.0


def test_describe_uses_the_reported_percentiles():
    v = np.arange(1000, dtype=np.float64)
    stats = describe(v)
    assert [stats[f"p{p}"] for p in PERCENTILES] == [float(x) for x in np.percentile(v, PERCENTILES)]
