"""Vectorized parsing of text columns.

Trace readers load a CSV file as columns of strings (pyarrow is fast at
that) and turn each column into numbers here, all rows at once.  A value
that does not parse is not an exception: it is a ``False`` in the returned
validity mask, so the reader can count the row under a reason (see
``rowcheck``) and carry on.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A plain decimal or scientific number, optionally signed.  Matching the text
# first (instead of catching a cast error) lets one bad cell fail one row.
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# Date, time to the second, up to 9 fractional digits, optional UTC offset.
_TIMESTAMP_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_ZONED_RE = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"


def trimmed(strings: pa.Array) -> pa.Array:
    """The column with surrounding whitespace removed and nulls as ''."""
    return pc.fill_null(pc.utf8_trim_whitespace(strings), "")


def _as_bool(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)


def is_missing(strings: pa.Array) -> np.ndarray:
    """True where the cell is empty (after trimming)."""
    return _as_bool(pc.equal(trimmed(strings), ""))


def parse_numbers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal text to float64.

    Returns ``(values, ok)``: ``ok`` is False where the text is not a finite
    number (and there ``values`` is 0).  Empty cells are not ok; callers test
    ``is_missing`` first to give them their own reason.
    """
    text = trimmed(strings)
    ok = _as_bool(pc.match_substring_regex(text, _NUMBER_RE))
    filled = pc.if_else(pa.array(ok), text, "0")
    try:
        values = pc.cast(filled, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Arrow refused something the pattern allowed; Python's float() is
        # slower but takes every such text.
        values = np.array([float(s) for s in filled.to_pylist()], dtype=np.float64)
    values = np.array(values, dtype=np.float64)  # writable copy
    ok &= np.isfinite(values)
    values[~ok] = 0.0
    return values, ok


def parse_timestamps_ns(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse ISO-like datetimes to int64 nanoseconds since the Unix epoch.

    Accepts ``YYYY-MM-DD hh:mm:ss`` (space or ``T``), up to 9 fractional
    digits, and an optional ``Z`` or ``±hh:mm`` offset.  A naive time is
    taken as UTC: only differences between rows matter to a trace.  Returns
    ``(ns, ok)`` with ``ok`` False (and ``ns`` 0) where the text is not such a
    datetime or names an impossible date.
    """
    text = trimmed(strings)
    ok = _as_bool(pc.match_substring_regex(text, _TIMESTAMP_RE))
    zoned = ok & _as_bool(pc.match_substring_regex(text, _ZONED_RE))
    ns = np.zeros(len(text), dtype=np.int64)
    for mask, typ in ((ok & ~zoned, pa.timestamp("ns")), (zoned, pa.timestamp("ns", tz="UTC"))):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        part = text.take(pa.array(idx))
        try:
            values = pc.cast(part, typ).cast(pa.int64()).to_numpy(zero_copy_only=False)
            ns[idx] = values
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Some cell passed the pattern but is no real date (Feb 30):
            # cast cell by cell to find which.
            for i, s in zip(idx, part.to_pylist()):
                try:
                    ns[i] = pc.cast(pa.array([s]), typ).cast(pa.int64())[0].as_py()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    ok[i] = False
    ns[~ok] = 0
    return ns, ok


def as_str_objects(strings: pa.Array) -> np.ndarray:
    """The column as a numpy object array of stripped str, '' becoming None."""
    values = trimmed(strings).to_pylist()
    return np.array([s if s else None for s in values], dtype=object)
