"""Load named CSV columns as strings, and find a record's line for error messages.

pyarrow parses the file (fast, vectorized) but does not say which line a
record came from; when a reader must report a bad row, ``locate_record``
re-reads the file with the ``csv`` module, which tracks line numbers, and
counts records the same way pyarrow did (empty lines ignored, rows with the
wrong number of fields left out).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from servesim.errors import TraceError


@dataclass(frozen=True)
class CsvColumns:
    """The requested columns of a CSV file, as string arrays of equal length.

    header: the file's column names, stripped of surrounding spaces.
    columns: name -> pyarrow string array, for the requested names present.
    malformed: records left out because their field count differs from the header's.
    """

    header: list[str]
    columns: dict[str, pa.Array]
    malformed: int

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def read_header(path: Path, label: str) -> list[str]:
    """The first line's field names, stripped; TraceError if the file is empty."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(csv.reader(f), None)
    if not row:
        raise TraceError(f"trace {label} is empty: expected a CSV header line")
    return [name.strip() for name in row]


def load_columns(path: Path, label: str, required: list[str], optional: list[str] = ()) -> CsvColumns:
    """Read ``required`` and ``optional`` columns by name, every cell as a string.

    A missing required column raises TraceError naming the columns found.
    """
    header = read_header(path, label)
    absent = [name for name in required if name not in header]
    if absent:
        raise TraceError(
            f"trace {label} has no column {', '.join(repr(a) for a in absent)} "
            f"(its columns are: {', '.join(header)})"
        )
    wanted = [name for name in (*required, *optional) if name in header]
    malformed = 0

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        nonlocal malformed
        malformed += 1
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={name: pa.string() for name in wanted},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TraceError(f"trace {label} cannot be read as CSV: {first_line}") from err
    columns = {name: table.column(name).combine_chunks() for name in wanted}
    return CsvColumns(header=header, columns=columns, malformed=malformed)


def locate_record(path: Path, num_fields: int, record: int | None) -> tuple[int, list[str] | None]:
    """Where the first reportable problem is, counting data records from 0.

    Scans for whichever comes first: a row whose field count is not
    ``num_fields`` (returned as ``(line, fields)``), or data record number
    ``record`` (returned as ``(line, None)``).  Pass ``record=None`` to look
    for a malformed row only.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)  # the header
        seen = -1
        for fields in reader:
            if not fields:
                continue  # pyarrow skips empty lines too
            if len(fields) != num_fields:
                return reader.line_num, fields
            seen += 1
            if seen == record:
                return reader.line_num, None
    raise AssertionError(f"record {record} not found in {path}")  # pragma: no cover
