"""Error statistics of predictions against measured steps, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.perf.steprows import StepRow
from servesim.perf.validate import ape_pct, error_slices, format_error_table, worst_rows


def row(index, kind, graphed, measured_ms):
    lens = () if kind == "decode" else (64,)
    batch = 0 if kind == "prefill" else 4
    return StepRow(index, "m", kind, lens, batch, 10, graphed, None, measured_ms / 1e3)


ROWS = [
    row(1, "decode", True, 10.0),
    row(2, "decode", True, 20.0),
    row(3, "decode", True, 40.0),
    row(4, "prefill", False, 100.0),
    row(5, "decode", False, 50.0),
]
# Errors: +10%, -5%, +0%, -20%, +2%.
PREDICTED = np.array([11.0, 19.0, 40.0, 80.0, 51.0]) / 1e3


def test_ape_is_absolute_and_relative_to_the_measurement():
    assert ape_pct(PREDICTED, [r.measured_s for r in ROWS]) == pytest.approx([10, 5, 0, 20, 2])


def test_slices_by_kind_and_graphed_then_all():
    slices = {s.label: s for s in error_slices(ROWS, PREDICTED)}
    assert list(slices) == ["prefill eager", "decode graphed", "decode eager", "all"]
    graphed = slices["decode graphed"]
    # APEs 0, 5, 10: median 5; p90 by linear interpolation: 5 + 0.8 * (10 - 5) = 9.
    assert (graphed.num_rows, graphed.median_ape_pct, graphed.p90_ape_pct, graphed.max_ape_pct) == pytest.approx((3, 5, 9, 10))
    assert slices["all"].num_rows == 5 and slices["all"].median_ape_pct == pytest.approx(5)
    table = format_error_table(list(slices.values()))
    assert "decode graphed         3     5.0%     9.0%    10.0%" in table


def test_worst_rows_are_ranked_by_ape_with_signed_errors():
    worst = worst_rows(ROWS, PREDICTED, count=2)
    assert [w.index for w in worst] == [4, 1]
    assert worst[0].error_pct == pytest.approx(-20) and worst[0].measured_ms == pytest.approx(100)
    assert worst[1].label == "m decode 4x10 graphed"
