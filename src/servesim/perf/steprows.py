"""Steps CSV files: one engine step per row, as the step-time model sees it.

The format is the one of ``shared/calibration/h100/llama-3-8b_steps.csv``:

==============  ==============================================================
column          meaning
==============  ==============================================================
``model``       catalog model id
``kind``        ``prefill`` (prompts only), ``decode`` (decodes only) or
                ``mixed`` (both in one step)
``prefill_lens``  prompt lengths computed from scratch, joined by ``+``
                (tokens); empty for none
``decode_batch``  decoding sequences (count); empty = 0
``decode_ctx``  cached tokens of each decoding sequence (tokens); empty = 0
``graphed``     1 = replayed as a CUDA graph (decode only), 0 = eager;
                empty = 0
``num_layers``  optional: decoder layers of this run, overriding the
                catalog's (a model measured with fewer layers)
``median_ms``   measured step time, milliseconds (needed to validate or
                calibrate, passed through otherwise)
==============  ==============================================================

Any other column is kept as read.  ``read_steps_csv`` checks every row and
raises ``TraceError`` with one line naming the row, the column and the value
of the first problem.  Rows are numbered from 1 for the first data row; the
file line is given too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from servesim.csv_rows import read_rows
from servesim.errors import TraceError
from servesim.perf.batch_shape import BatchShape

__all__ = ["KINDS", "REQUIRED_COLUMNS", "StepRow", "StepsCsv", "read_steps_csv", "write_steps_csv"]

KINDS = ("prefill", "decode", "mixed")
REQUIRED_COLUMNS = ("model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "graphed")
# Bounds of one step's shape: far beyond any engine's batch, small enough to price without
# building gigantic shapes (a row of 10**15 decodes would exhaust memory).
MAX_STEP_TOKENS = 10_000_000
MAX_STEP_SEQS = 1_000_000
MEASURED_COLUMN = "median_ms"


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of a steps CSV.

    index: 1-based data row number (the header is row 0).
    model: catalog id; kind: ``prefill`` | ``decode`` | ``mixed``.
    prefill_lens: prompt lengths computed from scratch this step (tokens).
    decode_batch: decoding sequences; decode_ctx: cached tokens of each.
    graphed: replayed as a CUDA graph.
    num_layers: layer count overriding the catalog's, or None.
    measured_s: the ``median_ms`` column in seconds, or None when absent.
    """

    index: int
    model: str
    kind: str
    prefill_lens: tuple[int, ...]
    decode_batch: int
    decode_ctx: int
    graphed: bool
    num_layers: int | None = None
    measured_s: float | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens computed this step: the prompts plus one per decode."""
        return sum(self.prefill_lens) + self.decode_batch

    def shape(self) -> BatchShape:
        """The step as a ``BatchShape``; each decode reads its cache plus the new token."""
        return BatchShape.build(
            prefill_chunks=[(0, n) for n in self.prefill_lens],
            decode_context_lens=[self.decode_ctx + 1] * self.decode_batch,
        )

    def label(self) -> str:
        """Short description, e.g. ``decode 32x2048 graphed`` or ``prefill 8x512 eager``."""
        parts = []
        if self.prefill_lens:
            lens = self.prefill_lens
            if len(lens) > 1 and len(set(lens)) == 1:
                parts.append(f"prefill {len(lens)}x{lens[0]}")
            else:
                parts.append(f"prefill {'+'.join(map(str, lens))}")
        if self.decode_batch:
            parts.append(f"decode {self.decode_batch}x{self.decode_ctx}")
        layers = f" L{self.num_layers}" if self.num_layers is not None else ""
        return f"{self.model}{layers} " + " + ".join(parts) + (" graphed" if self.graphed else " eager")


@dataclass(frozen=True, slots=True)
class StepsCsv:
    """A parsed steps file: its columns in file order, the checked rows and every raw cell.

    ``raw[i]`` maps each column to the text read for ``rows[i]``.
    """

    source: str
    columns: tuple[str, ...]
    rows: tuple[StepRow, ...]
    raw: tuple[dict[str, str], ...]


def read_steps_csv(path: str | PathLike[str], require_measured: bool = False) -> StepsCsv:
    """Read and check a steps CSV; ``TraceError`` naming the row, column and value of the first problem.

    ``require_measured``: the ``median_ms`` column must exist and hold a
    positive number in every row (validation and calibration need it).
    """
    path = Path(path)
    columns, cells = read_rows(path, "steps file")
    needed = REQUIRED_COLUMNS + ((MEASURED_COLUMN,) if require_measured else ())
    missing = [name for name in needed if name not in columns]
    if missing:
        raise TraceError(f"steps file {path}: missing column {missing[0]!r} (needs {', '.join(needed)})")
    if not cells:
        raise TraceError(f"steps file {path} has no rows")
    rows = tuple(_parse_row(i, raw, path.name, require_measured) for i, raw in enumerate(cells, start=1))
    return StepsCsv(str(path), columns, rows, tuple(cells))


def write_steps_csv(path: str | PathLike[str], columns: list[str], records: list[dict[str, str]]) -> None:
    """Write ``records`` (column -> text) under ``columns`` as a CSV file."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


# ---------------------------------------------------------------- parsing
class _RowProblem(Exception):
    """A bad cell: which column, and why (the caller adds the row)."""

    def __init__(self, column: str, value: str, why: str) -> None:
        super().__init__(f"column {column!r} = {value!r}: {why}")


def _parse_row(index: int, raw: dict[str, str | None], where: str, require_measured: bool) -> StepRow:
    try:
        return _row(index, {k: (v or "").strip() for k, v in raw.items() if k is not None}, require_measured)
    except _RowProblem as problem:
        # DictReader row i sits on file line i + 1 (line 1 is the header).
        raise TraceError(f"{where} row {index} (line {index + 1}): {problem}") from None


def _row(index: int, cell: dict[str, str], require_measured: bool) -> StepRow:
    model = cell["model"]
    if not model:
        raise _RowProblem("model", model, "a catalog model id is required")
    kind = cell["kind"]
    if kind not in KINDS:
        raise _RowProblem("kind", kind, f"must be one of {', '.join(KINDS)}")
    lens = _lengths(cell["prefill_lens"])
    batch = _count("decode_batch", cell["decode_batch"], minimum=0, maximum=MAX_STEP_SEQS)
    ctx = _count("decode_ctx", cell["decode_ctx"], minimum=0, maximum=MAX_STEP_TOKENS)
    graphed = _flag("graphed", cell["graphed"])
    _check_kind(kind, lens, batch, graphed, cell)
    layers_text = cell.get("num_layers", "")
    layers = _count("num_layers", layers_text, minimum=1) if layers_text else None
    measured = None
    if require_measured or cell.get(MEASURED_COLUMN, ""):
        measured = _positive_ms(cell.get(MEASURED_COLUMN, "")) / 1e3
    return StepRow(index, model, kind, lens, batch, ctx, graphed, layers, measured)


def _lengths(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    parts = text.split("+")
    if len(parts) > MAX_STEP_SEQS or not all(
        part.strip().isdigit() and 0 < int(part) <= MAX_STEP_TOKENS for part in parts
    ):
        raise _RowProblem("prefill_lens", text, f"must be token counts from 1 to {MAX_STEP_TOKENS:,} joined by '+', "
                          "e.g. 512+128")
    return tuple(int(part) for part in parts)


def _count(column: str, text: str, minimum: int, maximum: int = MAX_STEP_TOKENS) -> int:
    allowed = f"must be an integer from {minimum} to {maximum:,}"
    if not text:
        if minimum > 0:
            raise _RowProblem(column, text, allowed)
        return 0
    try:
        value = int(text)
    except ValueError:
        raise _RowProblem(column, text, allowed) from None
    if not minimum <= value <= maximum:
        raise _RowProblem(column, text, allowed)
    return value


def _flag(column: str, text: str) -> bool:
    if text not in ("", "0", "1"):
        raise _RowProblem(column, text, "must be 0 (eager) or 1 (CUDA graph)")
    return text == "1"


def _positive_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowProblem(MEASURED_COLUMN, text, "must be a positive number of milliseconds") from None
    if not value > 0 or value == float("inf"):
        raise _RowProblem(MEASURED_COLUMN, text, "must be a positive number of milliseconds")
    return value


def _check_kind(kind: str, lens: tuple[int, ...], batch: int, graphed: bool, cell: dict[str, str]) -> None:
    """The kind must agree with which of prompts and decodes the row has."""
    if kind in ("prefill", "mixed") and not lens:
        raise _RowProblem("prefill_lens", cell["prefill_lens"], f"a {kind} row needs at least one prompt length")
    if kind in ("decode", "mixed") and batch == 0:
        raise _RowProblem("decode_batch", cell["decode_batch"], f"a {kind} row needs decode_batch >= 1")
    if kind == "prefill" and batch:
        raise _RowProblem("decode_batch", cell["decode_batch"], "a prefill row has no decodes; use kind mixed")
    if kind == "decode" and lens:
        raise _RowProblem("prefill_lens", cell["prefill_lens"], "a decode row has no prompts; use kind mixed")
    if graphed and kind != "decode":
        # Like vLLM, servesim replays graphs only for pure-decode steps.
        raise _RowProblem("graphed", cell["graphed"], f"only decode rows can be graphed, this row is {kind}")
