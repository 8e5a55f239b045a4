"""Sweep and search spec files: validated, frozen models.

A sweep spec names a base scenario and the axes that vary it::

    name: replicas-by-gpu
    base: ../default.yaml          # a scenario file (relative to this spec) or an inline mapping
    axes:
      - kind: grid                 # every combination of the listed values
        fields: {cluster.num_replicas: [1, 2, 4], cluster.hardware: [h100, a100]}
      - kind: zip                  # the i-th values together (lists of equal length)
        fields: {workload.arrival.rate_rps: [2, 4], workload.num_requests: [100, 200]}
      - kind: random               # `samples` draws, seeded
        samples: 10
        seed: 0
        fields: {scheduler.max_num_seqs: {int: [8, 256]}, perf.gemm_efficiency: {float: [0.5, 0.9]}}

The runs are the cartesian product of the blocks' assignments.  A search spec
(``SearchSpec``) has a ``space`` of ranges, SLO ``constraints`` on summary
metrics, ``objectives`` and pruning settings (docs/sweeps.md).

Field paths are dotted scenario paths (``cluster.num_replicas``); whether a
value is allowed is decided by ``ScenarioConfig`` when the configs are
expanded, before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servesim import yaml_text
from servesim.errors import ConfigError

_FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ParamRange(BaseModel):
    """The values one field may take in a random axis or a search space: exactly one of
    ``choice`` (listed values), ``int`` (integers lo..hi inclusive) or ``float`` (reals lo..hi)."""

    model_config = _FROZEN

    choice: list[Any] | None = Field(None, min_length=1, description="Allowed values, drawn uniformly (any type).")
    # Written `int:` and `float:` in a spec (aliases: those names would shadow the builtins here).
    integers: tuple[int, int] | None = Field(None, alias="int", description="Integer range [lo, hi], both included (the field's unit).")
    reals: tuple[float, float] | None = Field(None, alias="float", description="Real range [lo, hi] (the field's unit).")
    step: Annotated[int, Field(ge=1)] = Field(1, description="int ranges only: spacing of the allowed integers (count).")
    log: bool = Field(False, description="int and float ranges: draw uniformly in log space (lo must be > 0).")

    @model_validator(mode="after")
    def _one_kind(self) -> ParamRange:
        kinds = [k for k, a in (("choice", "choice"), ("int", "integers"), ("float", "reals")) if getattr(self, a) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of choice, int, float (got {', '.join(kinds) or 'none'})")
        bounds = self.integers if self.integers is not None else self.reals
        if bounds is not None:
            if bounds[0] > bounds[1]:
                raise ValueError(f"range [{bounds[0]}, {bounds[1]}]: lo must not exceed hi")
            if self.log and bounds[0] <= 0:
                raise ValueError(f"log range [{bounds[0]}, {bounds[1]}]: lo must be > 0")
        return self

    def grid_values(self) -> list[Any]:
        """Every value of a choice or int range (for grid search); ``ConfigError`` for a float range."""
        if self.choice is not None:
            return list(self.choice)
        if self.integers is not None:
            return list(range(self.integers[0], self.integers[1] + 1, self.step))
        raise ConfigError("a float range has no finite grid; use choice or int ranges with sampler.kind: grid")


class GridAxes(BaseModel):
    """Every combination of the listed values of each field."""

    model_config = _FROZEN

    kind: Literal["grid"] = Field(description="Selects this block: the cartesian product of the fields' values.")
    fields: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        min_length=1, description="Dotted scenario field -> the values it takes (each list non-empty)."
    )


class ZipAxes(BaseModel):
    """The fields' i-th values together: lists of one length, one run per position."""

    model_config = _FROZEN

    kind: Literal["zip"] = Field(description="Selects this block: the fields' lists taken position by position.")
    fields: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        min_length=1, description="Dotted scenario field -> its values; every list has the same length."
    )

    @model_validator(mode="after")
    def _same_length(self) -> ZipAxes:
        lengths = {name: len(values) for name, values in self.fields.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have one length, got {lengths}")
        return self


class RandomAxes(BaseModel):
    """``samples`` independent draws of every field from its range, from a seeded generator."""

    model_config = _FROZEN

    kind: Literal["random"] = Field(description="Selects this block: seeded random samples.")
    samples: int = Field(ge=1, description="Number of draws (count).")
    seed: int = Field(0, ge=0, description="Seed of the draws (same seed, same samples).")
    fields: dict[str, ParamRange] = Field(min_length=1, description="Dotted scenario field -> its range.")


AxisBlock = Annotated[Union[GridAxes, ZipAxes, RandomAxes], Field(discriminator="kind")]


class _SpecBase(BaseModel):
    """What sweeps and searches share: a name and a base scenario."""

    model_config = _FROZEN

    name: str = Field(description="Sweep or search name; the default output folder is sweeps/<name>.")
    base: str | dict[str, Any] = Field(
        default_factory=dict,
        description="The base scenario: a scenario file (path, relative to the spec file) or an inline mapping.",
    )


class SweepSpec(_SpecBase):
    """A base scenario and the axes varying it (one run per assignment)."""

    axes: list[AxisBlock] = Field(min_length=1, description="Blocks of axes; the runs are the product of the blocks.")

    @model_validator(mode="after")
    def _fields_once(self) -> SweepSpec:
        seen: set[str] = set()
        for block in self.axes:
            for name in block.fields:
                if name in seen:
                    raise ValueError(f"field {name!r} appears in more than one axis block")
                seen.add(name)
        return self


class MetricBound(BaseModel):
    """An SLO on one summary metric (flattened with '__', e.g. ttft_s__p99): ``min`` <= value <= ``max``."""

    model_config = _FROZEN

    metric: str = Field(description="Summary metric, nested keys joined by '__' (e.g. ttft_s__p99, slo__goodput_rps).")
    max: float | None = Field(None, description="Largest allowed value (the metric's unit).")
    min: float | None = Field(None, description="Smallest allowed value (the metric's unit).")

    @model_validator(mode="after")
    def _a_bound(self) -> MetricBound:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on {self.metric}: give max or min")
        return self


class Objective(BaseModel):
    """A metric to minimise or maximise: a flattened summary metric or ``cost_usd_per_hr`` (the fleet's price)."""

    model_config = _FROZEN

    metric: str = Field(description="cost_usd_per_hr, num_gpus, or a summary metric joined by '__' (e.g. energy_per_token_j).")
    direction: Literal["minimize", "maximize"] = Field("minimize", description="Optimisation direction.")


class PruneConfig(BaseModel):
    """What rules a deployment out before it is simulated."""

    model_config = _FROZEN

    capacity: bool = Field(
        True,
        description="Prune deployments whose throughput upper bound (prefill token rate and decode rate at the "
        "largest batch, from the step-time model) is below target_rps.",
    )
    target_rps: float | None = Field(
        None, gt=0, description="Load the deployment must carry (requests/s); null = the workload's mean arrival rate."
    )
    max_gpus: int | None = Field(None, ge=1, description="Prune deployments using more GPUs than this (count); null: no limit.")


class SamplerConfig(BaseModel):
    """The Optuna sampler."""

    model_config = _FROZEN

    kind: Literal["auto", "tpe", "nsga2", "random", "grid"] = Field(
        "auto", description="auto: TPE with one objective, NSGA-II with several; grid: every point of the space."
    )
    seed: int = Field(0, ge=0, description="Sampler seed (same seed, same trials).")


class SearchSpec(_SpecBase):
    """An SLO-aware search for the best deployment over a space of config fields."""

    space: dict[str, ParamRange] = Field(min_length=1, description="Dotted scenario field -> its range.")
    constraints: list[MetricBound] = Field(default_factory=list, description="SLOs a feasible deployment meets.")
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="cost_usd_per_hr")],
        min_length=1,
        description="What to optimise; several give a Pareto front.",
    )
    trials: int = Field(50, ge=1, description="Trials to run, pruned ones included (count).")
    batch_size: int | None = Field(
        None, ge=1, description="Trials asked for at once and run in parallel (count); null = the executor's workers."
    )
    prune: PruneConfig = Field(default_factory=PruneConfig, description="Pruning before simulation.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="The Optuna sampler.")

    @model_validator(mode="after")
    def _distinct_objectives(self) -> SearchSpec:
        names = [o.metric for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives: each metric once, got {names}")
        return self


def load_spec(path: str | Path, model: type[SweepSpec] | type[SearchSpec]) -> SweepSpec | SearchSpec:
    """Read and validate a spec file; ``ConfigError`` (one line naming the field) on any problem."""
    path = Path(path)
    try:
        data = yaml_text.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"spec file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read spec file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"spec file {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{where} {getattr(err, 'problem', None) or 'invalid YAML'}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a spec must be a mapping, got {type(data).__name__}")
    return parse_spec(data, model, where=str(path))


def parse_spec(data: dict[str, Any], model: type[SweepSpec] | type[SearchSpec], where: str = "spec"):
    """Validate plain data into ``model``; ``ConfigError`` naming the field on the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
        msg = first.get("msg", "invalid value").removeprefix("Value error, ")
        value = first.get("input")
        shown = "" if isinstance(value, dict) or first.get("type") == "missing" else f" = {value!r}"
        if first.get("type") == "extra_forbidden":
            msg = "unknown field"
        raise ConfigError(f"{where}: {loc}{shown}: {msg}") from None
