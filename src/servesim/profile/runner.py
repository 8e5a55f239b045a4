"""Profile a plan of rows on one backend and write them in the calibration CSV format.

``profile_steps`` decides which rows can run (graphs need CUDA; a row must
fit in the device's free memory beside the weights), builds one decoder,
times each row and returns the measured rows with the skipped ones counted
by reason.  ``write_rows`` writes the shared CSV's columns
(``shared/calibration/h100/llama-3-8b_steps.csv``) plus ``num_layers`` and
``device``; ``write_device_json`` writes the device facts beside it.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from servesim.errors import ConfigError
from servesim.perf.model_spec import ModelSpec
from servesim.profile.backend import GRAPHS_NEED_CUDA, RowSkipped, StepBackend, check_profilable
from servesim.profile.footprint import row_bytes, usable_bytes, weight_bytes
from servesim.profile.rows import RowSpec

# The shared CSV's columns, in its order, then the ones profiling adds.
REFERENCE_COLUMNS = (
    "model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "tokens", "graphed",
    "median_ms", "min_ms", "max_ms",
)
COLUMNS = REFERENCE_COLUMNS + ("num_layers", "device")
# Timed runs per row when not given: the reference's 5 for prefill, 10 otherwise.
DEFAULT_REPEATS = {"prefill": 5, "decode": 10, "mixed": 10}
DEFAULT_WARMUP = 3
NEEDS_MORE_MEMORY = "needs more memory than the device has free"

# Called after each row: (1-based position, rows in the plan, the row, its CSV
# row when measured or the reason it was skipped).
RowCallback = Callable[[int, int, RowSpec, "dict[str, Any] | str"], None]


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """What one profiling run produced.

    rows: measured rows as CSV dicts (keys ``COLUMNS``), in plan order.
    skipped: rows not measured, counted by reason.
    device: the device the rows were measured on, as the ``device`` column says.
    num_layers: decoder layers profiled.
    """

    rows: list[dict[str, Any]]
    skipped: dict[str, int]
    device: str
    num_layers: int


def profile_steps(
    model: ModelSpec,
    plan: Sequence[RowSpec],
    backend: StepBackend,
    *,
    num_layers: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int | None = None,
    seed: int = 0,
    on_row: RowCallback | None = None,
) -> ProfileResult:
    """Time every row of ``plan`` that ``backend`` can run, with ``model``'s shape and random weights.

    num_layers: decoder layers to build (default: the model's); fewer layers
        profile faster, and the CSV records the count.
    warmup: untimed iterations before each row's timed ones.
    repeats: timed iterations per row (default: ``DEFAULT_REPEATS`` by kind).
    Raises ``ConfigError`` for a model the backends cannot build or a bad count.
    """
    check_profilable(model)
    layers = model.num_layers if num_layers is None else num_layers
    _check_counts(layers, warmup, repeats)
    runnable, skipped = _select_rows(model, plan, backend, layers)
    device = backend.device_name()
    measured: dict[int, dict[str, Any] | str] = {}
    if runnable:
        decoder = backend.build(model, layers, seed)
        try:
            for index, row in runnable:
                try:
                    times = decoder.time_row_ms(row, warmup, repeats or DEFAULT_REPEATS[row.kind])
                except RowSkipped as reason:
                    skipped[str(reason)] += 1
                    measured[index] = str(reason)
                else:
                    measured[index] = _csv_row(model.id, row, times, layers, device)
                if on_row is not None:
                    on_row(index + 1, len(plan), row, measured[index])
        finally:
            decoder.close()
    rows = [outcome for _, outcome in sorted(measured.items()) if isinstance(outcome, dict)]
    return ProfileResult(rows=rows, skipped=dict(skipped), device=device, num_layers=layers)


def write_rows(path: str | PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as a steps CSV with ``COLUMNS`` (the shared CSV's, then num_layers, device)."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def write_device_json(path: str | PathLike[str], facts: dict[str, Any]) -> None:
    """Write the device facts as indented JSON (like ``shared/calibration/h100/device.json``)."""
    Path(path).write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- internals
def _check_counts(num_layers: int, warmup: int, repeats: int | None) -> None:
    if num_layers < 1:
        raise ConfigError(f"option --num-layers: must be at least 1, got {num_layers}")
    if warmup < 0:
        raise ConfigError(f"option --warmup: must be at least 0, got {warmup}")
    if repeats is not None and repeats < 1:
        raise ConfigError(f"option --repeats: must be at least 1, got {repeats}")


def _select_rows(
    model: ModelSpec, plan: Sequence[RowSpec], backend: StepBackend, num_layers: int
) -> tuple[list[tuple[int, RowSpec]], Counter[str]]:
    """The rows worth trying, with their plan positions, and the others counted by reason."""
    budget = usable_bytes(backend.free_memory_bytes())
    weights = weight_bytes(model, num_layers, backend.elem_bytes)
    runnable: list[tuple[int, RowSpec]] = []
    skipped: Counter[str] = Counter()
    for index, row in enumerate(plan):
        if row.graphed and not backend.supports_graphs:
            skipped[GRAPHS_NEED_CUDA] += 1
        elif weights + row_bytes(model, row, num_layers, backend.elem_bytes) > budget:
            skipped[NEEDS_MORE_MEMORY] += 1
        else:
            runnable.append((index, row))
    return runnable, skipped


def _csv_row(model_id: str, row: RowSpec, times_ms: Sequence[float], num_layers: int, device: str) -> dict[str, Any]:
    return {
        "model": model_id,
        "kind": row.kind,
        "prefill_lens": row.prefill_lens_text,
        "decode_batch": row.decode_batch,
        "decode_ctx": row.decode_ctx,
        "tokens": row.num_tokens,
        "graphed": int(row.graphed),
        "median_ms": _ms(statistics.median(times_ms)),
        "min_ms": _ms(min(times_ms)),
        "max_ms": _ms(max(times_ms)),
        "num_layers": num_layers,
        "device": device,
    }


def _ms(value: float) -> float:
    # Six significant digits: the reference keeps ~4 decimals of ms on a GPU,
    # and a tiny CPU model's sub-millisecond rows must not round to zero.
    return float(f"{value:.6g}")
