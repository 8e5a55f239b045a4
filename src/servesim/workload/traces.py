"""Readers that turn public LLM-serving traces into a ``Workload``.

Formats (see the shared traces README for their origin):

* ``azure2023`` / ``azure2024``: CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``.
  One parser reads both: 2023 naive datetimes with 7 fractional digits,
  2024 ``+00:00`` offsets with or without fractional seconds, and ISO ``Z``.
* ``burstgpt``: CSV with ``Timestamp`` (seconds), ``Model``,
  ``Request tokens``, ``Response tokens``, ``Log Type`` and, in release v2,
  ``Session ID``; columns are found by name, so both layouts read alike.
* ``mooncake``: JSONL ``{"timestamp": ms, "input_length", "output_length",
  "hash_ids"}``; ``hash_ids`` become ``prefix_block_ids`` of 512-token blocks.

Contract of every reader: arrival times are seconds after the earliest kept
row (so the workload starts at 0), rows are sorted by arrival, and every
source row that does not become a request is counted in
``Workload.skipped`` under one reason (the first check it fails):

    wrong_column_count     CSV row with more or fewer fields than the header
    invalid_json           JSONL line that is not a JSON object
    missing_field          a required cell is empty or a key is absent
    unparseable_timestamp  not a datetime of the forms above
    unparseable_number     not a finite number (token counts: not whole)
    negative_value         a time or token count below zero
    zero_prompt_tokens     prompt length 0
    zero_output_tokens     output length 0
    bad_hash_ids           Mooncake ``hash_ids`` not a list of ids >= 0
    failed_request         BurstGPT ``Response tokens`` = 0, left out by choice
    model_filtered         BurstGPT row of another ``Model``, by choice
    log_type_filtered      BurstGPT row of another ``Log Type``, by choice

With ``on_bad_row="error"`` the first malformed row raises ``TraceError``
naming file, line, column, value and what is allowed; rows left out by
choice (the last three reasons) never raise.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np

from servesim.errors import TraceError
from servesim.workload.request import Workload
from servesim.workload.rowcheck import Check, RowVerdicts

if TYPE_CHECKING:
    from servesim.workload._csvload import CsvColumns

# The CSV readers import pyarrow (about 0.1 s) inside the function, so that
# importing servesim.workload for a synthetic run does not pay for it.

TraceFormat = Literal["azure2023", "azure2024", "burstgpt", "mooncake"]
OnBadRow = Literal["skip", "error"]

FORMATS: tuple[str, ...] = ("azure2023", "azure2024", "burstgpt", "mooncake")
BUILTIN_PREFIX = "builtin:"
# Traces shipped inside the package: name -> file under servesim/data/traces.
BUILTIN_TRACES: dict[str, str] = {
    "azure-2023-conv": "azure_2023_conv.csv",
    "mooncake-conv": "mooncake_conversation.jsonl",
}
MOONCAKE_BLOCK_SIZE = 512

_AZURE_COLUMNS = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
_BURST_REQUIRED = ["Timestamp", "Request tokens", "Response tokens"]
_BURST_OPTIONAL = ["Model", "Log Type", "Session ID"]
_WHOLE = "a whole number of tokens >= 1"


# --------------------------------------------------------------------------- paths


@contextlib.contextmanager
def trace_file(path: str | Path) -> Iterator[tuple[Path, str]]:
    """Yield ``(file path, label)`` for a trace path or ``builtin:<name>``.

    The label is what messages call the trace: the path as given.  Raises
    TraceError for an unknown builtin name or a path that is not a file.
    """
    text = str(path)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_TRACES:
            known = ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_TRACES)
            raise TraceError(f"unknown builtin trace {text!r}; known: {known}")
        resource = resources.files("servesim").joinpath("data", "traces", BUILTIN_TRACES[name])
        # as_file gives a real path even when the package is zipped.
        with resources.as_file(resource) as real:
            if not real.is_file():
                raise TraceError(f"builtin trace {text!r} is missing from the installed package ({real})")
            yield Path(real), text
        return
    p = Path(text).expanduser()
    if not p.exists():
        raise TraceError(f"trace file not found: {text}")
    if not p.is_file():
        raise TraceError(f"trace path is not a file: {text}")
    yield p, text


_ZONE_SUFFIX = re.compile(r"(Z|[+-]\d{2}:?\d{2})\s*$")


def detect_format(path: Path, label: str | None = None) -> str:
    """Guess a trace's format from its name and first lines.

    ``.jsonl`` (or a first line starting with ``{``) is Mooncake; a CSV
    header with ``TIMESTAMP,ContextTokens,GeneratedTokens`` is Azure (2024
    when the first timestamp carries a UTC offset, else 2023); a header with
    ``Request tokens`` is BurstGPT.  Anything else raises TraceError.
    """
    label = label or str(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "mooncake"
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
        second = f.readline()
    if first.lstrip().startswith("{"):
        return "mooncake"
    from servesim.workload._csvload import read_header

    header = set(read_header(path, label))
    if set(_AZURE_COLUMNS) <= header:
        stamp = second.split(",", 1)[0] if second else ""
        return "azure2024" if _ZONE_SUFFIX.search(stamp) else "azure2023"
    if "Request tokens" in header:
        return "burstgpt"
    raise TraceError(
        f"cannot tell the format of trace {label}: header {first.strip()[:120]!r} is neither "
        f"Azure (TIMESTAMP,ContextTokens,GeneratedTokens) nor BurstGPT (has 'Request tokens'), "
        f"and the name does not end in .jsonl (Mooncake)"
    )


# --------------------------------------------------------------------------- entry point


def read_trace(
    path: str | Path,
    format: str = "auto",
    on_bad_row: OnBadRow = "skip",
    *,
    burstgpt_failed: Literal["skip", "keep"] = "skip",
    burstgpt_model: str | None = None,
    burstgpt_log_type: str | None = None,
) -> Workload:
    """Read a trace file (or ``builtin:<name>``) into a ``Workload``.

    ``format`` is ``auto`` or one of ``FORMATS``; the BurstGPT options are
    ignored for other formats.  Raises TraceError for a missing file, an
    unknown or undetectable format, a bad row when ``on_bad_row="error"``,
    and a trace with no usable row.
    """
    if format != "auto" and format not in FORMATS:
        raise TraceError(f"unknown trace format {format!r}; allowed: auto, {', '.join(FORMATS)}")
    if on_bad_row not in ("skip", "error"):
        raise TraceError(f"unknown on_bad_row {on_bad_row!r}; allowed: skip, error")
    with trace_file(path) as (real, label):
        try:
            fmt = detect_format(real, label) if format == "auto" else format
            if fmt in ("azure2023", "azure2024"):
                return read_azure(real, on_bad_row=on_bad_row, label=label)
            if fmt == "burstgpt":
                return read_burstgpt(
                    real,
                    on_bad_row=on_bad_row,
                    failed=burstgpt_failed,
                    model=burstgpt_model,
                    log_type=burstgpt_log_type,
                    label=label,
                )
            return read_mooncake(real, on_bad_row=on_bad_row, label=label)
        except UnicodeDecodeError as err:
            raise TraceError(f"trace {label} is not UTF-8 text: {err.reason} at byte {err.start}") from None
        except OSError as err:
            raise TraceError(f"cannot read trace {label}: {err.strerror or err}") from None


# --------------------------------------------------------------------------- shared


def _bad_row_error(label: str, line: int, column: str, value: object, check: Check) -> TraceError:
    shown = value if isinstance(value, str) else json.dumps(value)
    return TraceError(
        f"trace {label} line {line}, column {column!r}: value {shown!r} is not allowed "
        f"({check.reason}); expected {check.allowed} (on_bad_row=error; use on_bad_row=skip "
        f"to count and skip such rows)"
    )


def _raise_first_bad_csv(
    path: Path, label: str, data: CsvColumns, verdicts: RowVerdicts, on_bad_row: OnBadRow
) -> None:
    """With ``on_bad_row="error"``, raise for the earliest malformed row, if any."""
    if on_bad_row != "error":
        return
    from servesim.workload._csvload import locate_record

    first = verdicts.first_bad()
    if first is None and data.malformed == 0:
        return
    record = None if first is None else first[0]
    line, fields = locate_record(path, len(data.header), record)
    if fields is not None:
        raise TraceError(
            f"trace {label} line {line}: {len(fields)} fields where the header has "
            f"{len(data.header)} ({','.join(data.header)}) (on_bad_row=error; use "
            f"on_bad_row=skip to count and skip such rows)"
        )
    row, check = first
    value = data.columns[check.column][row].as_py()
    raise _bad_row_error(label, line, check.column, value, check)


def _with_malformed(counts: dict[str, int], malformed: int) -> dict[str, int]:
    if malformed:
        return {"wrong_column_count": malformed, **counts}
    return counts


def _no_usable_row(label: str, total: int, skipped: dict[str, int]) -> TraceError:
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items())) or "none"
    return TraceError(f"trace {label} has no usable row ({total} rows read; skipped: {reasons})")


def _check_tokens(verdicts: RowVerdicts, data: CsvColumns, name: str) -> np.ndarray:
    """Parse a token-count column, rejecting text that is not a whole number.

    Signs are checked later (``negative_value``), so the reasons keep their
    documented order.  Counts above 2**53 are rejected too: float64 holds
    whole numbers exactly only up to there.
    """
    from servesim.workload import _columns as col

    values, ok = col.parse_numbers(data.columns[name])
    whole = (values == np.floor(values)) & (np.abs(values) <= 2.0**53)
    verdicts.reject(~ok | ~whole, Check("unparseable_number", name, _WHOLE))
    return values


# --------------------------------------------------------------------------- azure


def read_azure(path: str | Path, *, on_bad_row: OnBadRow = "skip", label: str | None = None) -> Workload:
    """Read an Azure LLM inference trace (2023 or 2024 layout)."""
    from servesim.workload import _columns as col
    from servesim.workload._csvload import load_columns

    path = Path(path)
    label = label or str(path)
    data = load_columns(path, label, _AZURE_COLUMNS)
    n = len(data)
    verdicts = RowVerdicts(n)
    for name in _AZURE_COLUMNS:
        verdicts.reject(col.is_missing(data.columns[name]), Check("missing_field", name, "a value (the cell is empty)"))
    stamps, ok = col.parse_timestamps_ns(data.columns["TIMESTAMP"])
    verdicts.reject(
        ~ok,
        Check(
            "unparseable_timestamp",
            "TIMESTAMP",
            "a datetime like '2023-11-16 18:17:03.9799600', '2024-05-10 00:00:00+00:00' or '2025-01-01T00:00:00Z'",
        ),
    )
    prompt = _check_tokens(verdicts, data, "ContextTokens")
    output = _check_tokens(verdicts, data, "GeneratedTokens")
    verdicts.reject(prompt < 0, Check("negative_value", "ContextTokens", _WHOLE))
    verdicts.reject(output < 0, Check("negative_value", "GeneratedTokens", _WHOLE))
    verdicts.reject(prompt == 0, Check("zero_prompt_tokens", "ContextTokens", _WHOLE))
    verdicts.reject(output == 0, Check("zero_output_tokens", "GeneratedTokens", _WHOLE))
    _raise_first_bad_csv(path, label, data, verdicts, on_bad_row)

    skipped = _with_malformed(verdicts.counts(), data.malformed)
    keep = verdicts.kept
    if not keep.any():
        raise _no_usable_row(label, n + data.malformed, skipped)
    kept_ns = stamps[keep]
    # Subtract in integer nanoseconds first: float64 seconds since 1970
    # would lose the sub-microsecond part.
    arrival = (kept_ns - kept_ns.min()).astype(np.float64) / 1e9
    return Workload.from_arrays(
        arrival,
        prompt[keep].astype(np.int64),
        output[keep].astype(np.int64),
        source=f"azure:{label}",
        skipped=skipped,
    )


# --------------------------------------------------------------------------- burstgpt


def read_burstgpt(
    path: str | Path,
    *,
    on_bad_row: OnBadRow = "skip",
    failed: Literal["skip", "keep"] = "skip",
    model: str | None = None,
    log_type: str | None = None,
    label: str | None = None,
) -> Workload:
    """Read a BurstGPT trace (v1 or v2 columns, found by name).

    failed: a failed request has ``Response tokens`` = 0; ``skip`` counts it
        as ``failed_request``, ``keep`` keeps it with ``output_tokens`` = 1
        (its prefill still ran and produced the first token; a request must
        have at least one output token).
    model / log_type: keep only rows whose ``Model`` / ``Log Type`` equals
        this (case-insensitive); other rows count as ``model_filtered`` /
        ``log_type_filtered``.
    ``Session ID`` (v2) becomes ``session_id`` and ``Model`` becomes ``model``.
    """
    if failed not in ("skip", "keep"):
        raise TraceError(f"unknown burstgpt_failed {failed!r}; allowed: skip, keep")
    from servesim.workload import _columns as col
    from servesim.workload._csvload import load_columns

    path = Path(path)
    label = label or str(path)
    data = load_columns(path, label, _BURST_REQUIRED, _BURST_OPTIONAL)
    n = len(data)
    verdicts = RowVerdicts(n)
    for wanted, column, reason in ((model, "Model", "model_filtered"), (log_type, "Log Type", "log_type_filtered")):
        if wanted is None:
            continue
        if column not in data.columns:
            raise TraceError(f"trace {label} has no {column!r} column to filter on {wanted!r}")
        values = col.trimmed(data.columns[column]).to_numpy(zero_copy_only=False).astype(str)
        verdicts.reject(np.char.lower(values) != wanted.strip().lower(), Check(reason, column, repr(wanted), bad=False))
    for name in _BURST_REQUIRED:
        verdicts.reject(col.is_missing(data.columns[name]), Check("missing_field", name, "a value (the cell is empty)"))
    stamps, ok = col.parse_numbers(data.columns["Timestamp"])
    verdicts.reject(~ok, Check("unparseable_number", "Timestamp", "a number of seconds >= 0"))
    prompt = _check_tokens(verdicts, data, "Request tokens")
    output = _check_tokens(verdicts, data, "Response tokens")
    verdicts.reject(stamps < 0, Check("negative_value", "Timestamp", "a number of seconds >= 0"))
    verdicts.reject(prompt < 0, Check("negative_value", "Request tokens", _WHOLE))
    verdicts.reject(output < 0, Check("negative_value", "Response tokens", "a whole number of tokens >= 0"))
    if failed == "skip":
        verdicts.reject(output == 0, Check("failed_request", "Response tokens", ">= 1 (burstgpt_failed=skip)", bad=False))
    verdicts.reject(prompt == 0, Check("zero_prompt_tokens", "Request tokens", _WHOLE))
    _raise_first_bad_csv(path, label, data, verdicts, on_bad_row)

    skipped = _with_malformed(verdicts.counts(), data.malformed)
    keep = verdicts.kept
    if not keep.any():
        raise _no_usable_row(label, n + data.malformed, skipped)
    kept_stamps = stamps[keep]
    optional = {}
    if "Session ID" in data.columns:
        optional["session_id"] = col.as_str_objects(data.columns["Session ID"])[keep]
    if "Model" in data.columns:
        optional["model"] = col.as_str_objects(data.columns["Model"])[keep]
    return Workload.from_arrays(
        kept_stamps - kept_stamps.min(),
        prompt[keep].astype(np.int64),
        # Only kept failed rows (failed="keep") have 0 here.
        np.maximum(output[keep], 1).astype(np.int64),
        source=f"burstgpt:{label}",
        skipped=skipped,
        **optional,
    )


# --------------------------------------------------------------------------- mooncake

_MC_FIELDS = (
    ("timestamp", "a number of milliseconds >= 0"),
    ("input_length", _WHOLE),
    ("output_length", _WHOLE),
)


def _mooncake_row(obj: object) -> tuple[Check, object] | tuple[float, int, int, tuple[int, ...]]:
    """Validate one decoded line: the parsed values, or ``(failed check, value)``."""
    if not isinstance(obj, dict):
        return Check("invalid_json", "(line)", "a JSON object"), obj
    values = []
    for key, allowed in _MC_FIELDS:
        if key not in obj or obj[key] is None:
            return Check("missing_field", key, allowed), None
        v = obj[key]
        # Up to 2**53, as the CSV readers: float64 holds whole numbers exactly only up to there,
        # and a bigger count would overflow the int64 columns.
        number_ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= 2**53
        if not number_ok or (key != "timestamp" and v != int(v)):
            return Check("unparseable_number", key, allowed), v
        if v < 0:
            return Check("negative_value", key, allowed), v
        values.append(v)
    stamp, prompt, output = values
    if prompt == 0:
        return Check("zero_prompt_tokens", "input_length", _WHOLE), prompt
    if output == 0:
        return Check("zero_output_tokens", "output_length", _WHOLE), output
    ids = obj.get("hash_ids", [])
    # set(map(type, ...)) runs in C: ~10x faster than an isinstance loop on
    # the ~25 ids per row, and it rejects bools (type(True) is bool).
    if not isinstance(ids, list) or (ids and (set(map(type, ids)) != {int} or min(ids) < 0)):
        return Check("bad_hash_ids", "hash_ids", "a list of block ids (integers >= 0)"), ids
    return float(stamp), int(prompt), int(output), tuple(ids)


def read_mooncake(
    path: str | Path,
    *,
    on_bad_row: OnBadRow = "skip",
    block_size: int = MOONCAKE_BLOCK_SIZE,
    label: str | None = None,
) -> Workload:
    """Read a Mooncake JSONL trace; blank lines are ignored.

    ``timestamp`` is milliseconds; ``hash_ids`` (optional, default empty)
    become ``prefix_block_ids`` with ``prefix_block_size = block_size``.
    """
    path = Path(path)
    label = label or str(path)
    rows: list[tuple[float, int, int, tuple[int, ...]]] = []
    skipped: Counter[str] = Counter()
    total = 0
    # Row by row: json.loads is quick enough for Mooncake-sized files and
    # gives each bad line its own verdict and line number.
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            total += 1
            try:
                result = _mooncake_row(json.loads(line))
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
                result = (Check("invalid_json", "(line)", "a JSON object"), line.strip()[:80])
            if isinstance(result[0], Check):
                check, value = result
                if on_bad_row == "error":
                    raise _bad_row_error(label, line_no, check.column, value, check)
                skipped[check.reason] += 1
                continue
            rows.append(result)
    if not rows:
        raise _no_usable_row(label, total, dict(skipped))
    stamps = np.array([r[0] for r in rows], dtype=np.float64)
    return Workload.from_arrays(
        (stamps - stamps.min()) / 1000.0,
        [r[1] for r in rows],
        [r[2] for r in rows],
        prefix_block_ids=[r[3] for r in rows],
        prefix_block_size=block_size,
        source=f"mooncake:{label}",
        skipped=dict(skipped),
    )
