"""Benchmark points as CSV rows, and the scenario each row stands for.

A row describes one client run against one deployment (docs/benchmarks.md):
``model``, ``hardware``, ``isl`` and ``osl`` are required, and exactly one of
``concurrency`` (closed-loop clients, ``vllm bench serve --max-concurrency``)
or ``request_rate`` (open loop, requests per second).  Every other column of
``OPTIONAL`` may be left out or left empty, which means "the default": a
key is put in the scenario only when the row gives a value, so the
scenario's (and the engine's) own defaults apply otherwise.  Columns this
module does not know are carried along untouched.

``read_bench_csv`` raises ``TraceError`` with one line naming the file, the
row (1-based, and its line), the column and the value of the first problem.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable

from servesim.csv_rows import read_rows
from servesim.errors import TraceError

__all__ = ["BenchCsv", "BenchRow", "RowProblem", "read_bench_csv", "row_scenario", "write_bench_csv"]

REQUIRED = ("model", "hardware", "isl", "osl")
LOAD = ("concurrency", "request_rate")

# Prefix length blocks: vLLM's prefix cache hashes 16-token blocks.
PREFIX_BLOCK_TOKENS = 16


class RowProblem(Exception):
    """A bad cell: its column, its text and why (the caller adds the row)."""

    def __init__(self, column: str, value: str, why: str) -> None:
        super().__init__(f"column {column!r} = {value!r}: {why}")
        self.column = column


def _positive_int(column: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise RowProblem(column, text, "must be a positive integer")
    return value


def _count(column: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise RowProblem(column, text, "must be an integer >= 0")
    return value


def _positive_float(column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise RowProblem(column, text, "must be a positive number")
    return value


def _fraction(column: str, text: str) -> float:
    value = _positive_float(column, text) if text else 0.0
    if not 0 < value <= 1:
        raise RowProblem(column, text, "must be a number in (0, 1]")
    return value


def _flag(column: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise RowProblem(column, text, "must be true or false (or 1 / 0)")


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(column: str, text: str) -> str:
        if text not in allowed:
            raise RowProblem(column, text, f"must be one of {', '.join(allowed)}")
        return text

    return parse


def _text(column: str, text: str) -> str:
    return text


# Every column servesim reads, with its parser; empty cells are skipped.
PARSERS: dict[str, Callable[[str, str], Any]] = {
    "case_id": _text,
    "model": _text,
    "hardware": _text,
    "isl": _positive_int,
    "osl": _positive_int,
    "concurrency": _positive_int,
    "request_rate": _positive_float,
    "engine": _text,
    "tensor_parallel": _positive_int,
    "pipeline_parallel": _positive_int,
    "num_replicas": _positive_int,
    "weight_dtype": _text,
    "kv_cache_dtype": _text,
    "num_requests": _positive_int,
    "arrival": _choice("poisson", "constant"),
    "range_ratio": _fraction,
    "shared_prefix_tokens": _count,
    "num_prefixes": _positive_int,
    "max_num_seqs": _positive_int,
    "max_num_batched_tokens": _positive_int,
    "max_model_len": _positive_int,
    "gpu_memory_utilization": _fraction,
    "prefix_caching": _flag,
    "seed": _count,
}
OPTIONAL = tuple(name for name in PARSERS if name not in REQUIRED and name not in LOAD)

# Row columns that go to the scenario as they are: column -> (section, field).
_PASSED = {
    "engine": ("cluster", "engine"),
    "tensor_parallel": ("cluster", "tensor_parallel"),
    "pipeline_parallel": ("cluster", "pipeline_parallel"),
    "num_replicas": ("cluster", "num_replicas"),
    "weight_dtype": ("cluster", "weight_dtype"),
    "kv_cache_dtype": ("cluster", "kv_cache_dtype"),
    "max_model_len": ("cluster", "max_model_len"),
    "gpu_memory_utilization": ("cluster", "gpu_memory_utilization"),
    "prefix_caching": ("cluster", "prefix_caching"),
    "max_num_seqs": ("scheduler", "max_num_seqs"),
    "max_num_batched_tokens": ("scheduler", "max_num_batched_tokens"),
}
# The column a scenario field came from (to name it in errors), most specific first.
FIELD_COLUMNS: dict[str, str] = {
    **{f"{section}.{name}": column for column, (section, name) in _PASSED.items()},
    "cluster.model": "model",
    "cluster.hardware": "hardware",
    "seed": "seed",
    "workload.concurrency": "concurrency",
    "workload.arrival.rate_rps": "request_rate",
    "workload.num_requests": "num_requests",
    "workload.system_prompts.tokens": "shared_prefix_tokens",
    "workload.shared_prefix_tokens": "shared_prefix_tokens",
    "workload.system_prompts.count": "num_prefixes",
    "workload.num_prefixes": "num_prefixes",
    "workload.input_len": "isl",
    "workload.prompt_tokens": "isl",
    "workload.output_len": "osl",
    "workload.output_tokens": "osl",
}


@dataclass(frozen=True)
class BenchRow:
    """One benchmark point: its 1-based row number, the parsed cells (empty ones left out) and
    its raw text by column."""

    index: int
    values: dict[str, Any]
    raw: dict[str, str]

    @property
    def line(self) -> int:
        return self.index + 1  # line 1 is the header

    @property
    def closed_loop(self) -> bool:
        return "concurrency" in self.values

    @property
    def label(self) -> str:
        return self.raw.get("case_id") or f"row {self.index}"


@dataclass(frozen=True)
class BenchCsv:
    """A benchmark CSV: its path, columns in file order and rows."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[BenchRow, ...]

    def where(self, row: BenchRow) -> str:
        """``IN.csv row 3 (line 4)``: where a message about ``row`` points."""
        return f"{self.path} row {row.index} (line {row.line})"


def read_bench_csv(path: str | PathLike[str], extra: Callable[[BenchRow], None] | None = None) -> BenchCsv:
    """Read and check a benchmark CSV; ``extra(row)`` may check more cells (raising ``RowProblem``).

    Raises ``TraceError`` (one line) for a missing or unreadable file, a missing column or the
    first bad cell.
    """
    path = Path(path)
    columns, cells = read_rows(path, "benchmark file")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise TraceError(f"benchmark file {path}: missing column {missing[0]!r} (needs {', '.join(REQUIRED)}, "
                         "and concurrency or request_rate)")
    if not any(name in columns for name in LOAD):
        raise TraceError(f"benchmark file {path}: needs a column 'concurrency' (closed loop) or 'request_rate' (open loop)")
    if not cells:
        raise TraceError(f"benchmark file {path} has no rows")
    rows = []
    for index, cell in enumerate(cells, start=1):
        raw = {name: (cell.get(name) or "") for name in columns}
        try:
            if None in cell:
                raise RowProblem(columns[-1], ",".join(cell[None]), f"the row has more cells than the header's {len(columns)}")
            row = BenchRow(index, _parse(raw), raw)
            if extra is not None:
                extra(row)
        except RowProblem as problem:
            raise TraceError(f"{path} row {index} (line {index + 1}): {problem}") from None
        rows.append(row)
    return BenchCsv(path, columns, tuple(rows))


def _parse(raw: dict[str, str]) -> dict[str, Any]:
    values = {}
    for name, parse in PARSERS.items():
        text = raw.get(name, "").strip()
        if text:
            values[name] = parse(name, text)
        elif name in REQUIRED:
            raise RowProblem(name, text, "is required")
    given = [name for name in LOAD if name in values]
    if len(given) != 1:
        column = "concurrency" if "concurrency" in raw else "request_rate"
        why = "give concurrency or request_rate, not both" if given else "give concurrency (closed loop) or request_rate (open loop)"
        raise RowProblem(column, raw.get(column, ""), why)
    if "arrival" in values and "concurrency" in values:
        raise RowProblem("arrival", raw["arrival"], "closed-loop rows (concurrency) have no arrival process")
    return values


def write_bench_csv(path: str | PathLike[str], columns: list[str], records: list[dict[str, str]]) -> None:
    """Write ``records`` (column -> text) under ``columns`` as a CSV file."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


# ---------------------------------------------------------------- to a scenario


def row_scenario(row: BenchRow, catalog_files: list[str] = (), calibration: str | None = None) -> dict[str, Any]:
    """The scenario (plain data, for ``servesim.simulate``) that ``row`` stands for."""
    v = row.values
    cluster: dict[str, Any] = {"model": v["model"], "hardware": v["hardware"]}
    scenario: dict[str, Any] = {"name": f"bench-{row.label}", "workload": _workload(v), "cluster": cluster,
                                "scheduler": {}}
    for column, (section, name) in _PASSED.items():
        if column in v:
            scenario[section][name] = v[column]
    if "seed" in v:
        scenario["seed"] = v["seed"]
    if catalog_files:
        scenario["catalog"] = {"files": [str(f) for f in catalog_files]}
    if calibration is not None:
        scenario["calibration"] = str(calibration)
    return scenario


def _workload(v: dict[str, Any]) -> dict[str, Any]:
    ratio = v.get("range_ratio", 1.0)
    prefix, prefixes = v.get("shared_prefix_tokens", 0), v.get("num_prefixes", 1)
    if "concurrency" in v:
        workload = {"kind": "closed_loop", "concurrency": v["concurrency"],
                    "num_requests": v.get("num_requests", 10 * v["concurrency"]),
                    "input_len": v["isl"], "output_len": v["osl"], "range_ratio": ratio}
        if prefix:
            workload.update(shared_prefix_tokens=prefix, num_prefixes=prefixes, prefix_block_tokens=PREFIX_BLOCK_TOKENS)
        return workload
    workload = {"kind": "synthetic", "num_requests": v.get("num_requests", 1000),
                "arrival": {"process": v.get("arrival", "poisson"), "rate_rps": v["request_rate"]},
                "prompt_tokens": _lengths(v["isl"], ratio), "output_tokens": _lengths(v["osl"], ratio)}
    if prefix:
        workload.update(system_prompts={"count": prefixes, "tokens": prefix, "zipf": 0.0},
                        prefix_block_tokens=PREFIX_BLOCK_TOKENS)
    return workload


def _lengths(longest: int, ratio: float) -> dict[str, Any]:
    """Integers uniform in ``[ceil(ratio x longest), longest]``, as a ``LengthConfig``."""
    low = max(1, math.ceil(ratio * longest - 1e-9))
    return {"dist": "fixed", "value": longest} if low >= longest else {"dist": "uniform", "low": low, "high": longest}
