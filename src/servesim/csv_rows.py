"""Reading small CSV files whole, cell by cell, for readers that check every cell and name its line.

Steps files (``servesim.perf.steprows``) and benchmark points (``servesim.bench.rows``) are a few
hundred rows at most; the ``csv`` module keeps every cell as written, so a bad one is reported
with its row, column and text.  Large traces go through pyarrow instead (``servesim.workload``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from servesim.errors import TraceError

__all__ = ["read_rows"]


def read_rows(path: Path, label: str) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """``(header, rows as dicts)`` of the CSV at ``path``.

    ``label`` names the file's kind in the one-line ``TraceError`` raised for a missing or
    unreadable file, one that is not UTF-8 CSV, or a header naming a column twice.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = tuple(reader.fieldnames or ())
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:
                # A dict keeps the last of two same-named cells: which one was meant is anyone's guess.
                raise TraceError(f"{label} {path}: column {twice[0]!r} appears more than once in the header")
            return header, [dict(row) for row in reader]
    except OSError as err:
        raise TraceError(f"cannot read {label} {path}: {err.strerror or err}") from None
    except (csv.Error, UnicodeDecodeError) as err:
        raise TraceError(f"{label} {path} is not a readable UTF-8 CSV: {err}") from None
