"""Property test: the vectorized Azure reader agrees with a row-by-row reference."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.errors import TraceError
from servesim.workload.traces import read_azure

STAMPS = ["2023-11-16 00:00:01.5", "2023-11-16 00:00:09", "2024-01-01 00:00:00+00:00", "", "later", "2023-13-01 00:00:00"]
TOKENS = ["0", "1", "17", " 4 ", "-3", "x", "", "2.5", "1e2"]


def reference_reason(stamp: str, ctx: str, gen: str) -> str | None:
    """The documented check order, one row at a time."""
    cells = (stamp, ctx, gen)
    if any(not c.strip() for c in cells):
        return "missing_field"
    if stamp in ("later", "2023-13-01 00:00:00"):
        return "unparseable_timestamp"
    numbers = []
    for c in (ctx, gen):
        try:
            v = float(c)
        except ValueError:
            return "unparseable_number"
        if v != int(v):
            return "unparseable_number"
        numbers.append(v)
    if numbers[0] < 0 or numbers[1] < 0:
        return "negative_value"
    if numbers[0] == 0:
        return "zero_prompt_tokens"
    if numbers[1] == 0:
        return "zero_output_tokens"
    return None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STAMPS), st.sampled_from(TOKENS), st.sampled_from(TOKENS)), min_size=1, max_size=12))
def test_reader_matches_reference(rows):
    expected: dict[str, int] = {}
    kept = 0
    for row in rows:
        reason = reference_reason(*row)
        if reason is None:
            kept += 1
        else:
            expected[reason] = expected.get(reason, 0) + 1
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(",".join(r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text(text)
        if kept == 0:
            with pytest.raises(TraceError, match="no usable row"):
                read_azure(path)
        else:
            w = read_azure(path)
            assert len(w) == kept and w.skipped == expected
        if expected:
            first_bad = next(i for i, r in enumerate(rows) if reference_reason(*r))
            with pytest.raises(TraceError, match=rf"line {first_bad + 2}, column"):
                read_azure(path, on_bad_row="error")
