"""Axes to concrete runs: expansion of grid, zip and random blocks, configs and their hashes.

``expand_axes(blocks)`` gives the assignments (dotted field -> value), the
cartesian product of each block's own assignments, first block outermost.
``build_runs(spec, spec_dir)`` applies each to the base scenario and
validates it into a ``ScenarioConfig`` (all of them before anything runs);
duplicate configs collapse to one run.  A run is identified by
``config_hash``: the first 16 hex digits of the SHA-256 of the resolved
config's canonical JSON (sorted keys, no spaces).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from servesim.config import ScenarioConfig, load_config, set_dotted, validate_config
from servesim.errors import ConfigError
from servesim.limits import check_config, check_runs
from servesim.sweep.spec import GridAxes, ParamRange, RandomAxes, ZipAxes

Assignment = dict[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its axis values, validated config and hash."""

    assignment: Assignment
    config: ScenarioConfig
    config_hash: str


def config_hash(config: ScenarioConfig) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of ``config.to_dict()``."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def expand_axes(blocks: list[GridAxes | ZipAxes | RandomAxes]) -> list[Assignment]:
    """Every assignment of the blocks: the product of each block's list, in spec order."""
    per_block = [_block_assignments(block) for block in blocks]
    out = []
    for parts in itertools.product(*per_block):
        merged: Assignment = {}
        for part in parts:
            merged.update(part)
        out.append(merged)
    return out


def axis_sizes(blocks: list[GridAxes | ZipAxes | RandomAxes]) -> dict[str, int]:
    """How many values each axis contributes to the product: a grid field its list's length, a zip
    block (its fields joined by '+') its lists' length, a random block (fields joined by '+') its samples."""
    sizes: dict[str, int] = {}
    for block in blocks:
        if isinstance(block, GridAxes):
            sizes.update({name: len(values) for name, values in block.fields.items()})
        elif isinstance(block, ZipAxes):
            sizes["+".join(block.fields)] = len(next(iter(block.fields.values())))
        else:
            sizes["+".join(block.fields) + " samples"] = block.samples
    return sizes


def _block_assignments(block: GridAxes | ZipAxes | RandomAxes) -> list[Assignment]:
    names = list(block.fields)
    if isinstance(block, GridAxes):
        return [dict(zip(names, values)) for values in itertools.product(*block.fields.values())]
    if isinstance(block, ZipAxes):
        return [dict(zip(names, values)) for values in zip(*block.fields.values())]
    rng = np.random.default_rng(block.seed)
    # Draw sample by sample, field by field in spec order: adding a sample appends runs.
    return [{name: draw(block.fields[name], rng) for name in names} for _ in range(block.samples)]


def draw(space: ParamRange, rng: np.random.Generator) -> Any:
    """One value from ``space``: a uniform choice, or uniform (log-uniform) in a range."""
    if space.choice is not None:
        return space.choice[int(rng.integers(len(space.choice)))]
    if space.integers is not None:
        lo, hi = space.integers
        if space.log:
            # Floor of a log-uniform real on [lo, hi + 1): each integer weighted by its log-width.
            value = min(max(int(math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))), lo), hi)
        else:
            value = int(rng.integers(lo, hi + 1))
        return lo + (value - lo) // space.step * space.step
    lo, hi = space.reals
    if space.log:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def base_raw(base: str | dict[str, Any], spec_dir: Path) -> dict[str, Any]:
    """The base scenario resolved (every default filled in, file paths absolute) as plain data."""
    if isinstance(base, str):
        path = Path(base)
        return load_config(path if path.is_absolute() else spec_dir / path).to_dict()
    from servesim.config import _resolve_paths  # the scenario loader's path rule, for inline bases too

    raw = copy.deepcopy(base)
    _resolve_paths(raw, spec_dir.resolve())
    try:
        return validate_config(raw).to_dict()
    except ConfigError as err:
        raise ConfigError(f"base: {err}") from None


def apply_assignment(raw: dict[str, Any], assignment: Assignment) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted field set (missing or null sections become mappings)."""
    out = copy.deepcopy(raw)
    for path, value in assignment.items():
        set_dotted(out, path, copy.deepcopy(value), f"axis {path}")
    return out


def configure(raw: dict[str, Any], assignment: Assignment) -> ScenarioConfig:
    """The validated config of one assignment; ``ConfigError`` naming the assignment and the field."""
    try:
        config = validate_config(apply_assignment(raw, assignment))
        check_config(config)  # pre-flight limits: refused before the sweep starts, not as a failed run
        return config
    except ConfigError as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in assignment.items())
        raise ConfigError(f"axes ({shown}): {err}") from None


def build_runs(blocks: list[Any], base: str | dict[str, Any], spec_dir: Path) -> list[RunSpec]:
    """Every run of a sweep, validated, duplicates (same config hash) dropped, in expansion order."""
    sizes = axis_sizes(blocks)
    check_runs(math.prod(sizes.values()), sizes, "sweep")  # before expanding: 10^6 runs would take minutes
    raw = base_raw(base, spec_dir)
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for assignment in expand_axes(blocks):
        config = configure(raw, assignment)
        digest = config_hash(config)
        if digest not in seen:
            seen.add(digest)
            runs.append(RunSpec(assignment, config, digest))
    return runs
