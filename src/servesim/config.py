"""The scenario: one validated, frozen description of a run.

A scenario YAML file has one section per component; each section is the
config model owned by that component's package:

=============  ==============================================  =====================
section        meaning                                         model
=============  ==============================================  =====================
``workload``   requests: a trace or a synthetic generator      ``WorkloadConfig``
``cluster``    replicas, GPU, parallelism, memory settings     ``ClusterConfig``
``scheduler``  batching limits and queue policy per replica    ``SchedulerConfig``
``router``     global routing policy                           ``RouterConfig``
``slo``        latency targets for attainment and goodput      ``SloTargets``
``perf``       efficiencies of the step-time model             ``StepTimeParams``
``engine``     simulator knobs that do not change results      ``EngineConfig``
``catalog``    extra or overriding model / GPU entries         ``CatalogConfig``
``semantic_    a semantic cache in front of the fleet          ``SemanticCacheConfig``
cache``
``autoscal-    replicas added and removed by a policy          ``AutoscalingConfig``
ing``
``failures``   failures, recovery and slowdowns                ``FailuresConfig``
=============  ==============================================  =====================

The ``cluster`` section's models live in ``servesim.cluster_config``, the
fleet operations' in ``servesim.fleet_config``; they are imported here.

plus ``name``, ``seed``, ``horizon_s`` and ``calibration`` (a calibration file
whose fitted values become the ``perf`` defaults).  Every field documents its unit in
the JSON schema (``servesim config schema``).  Errors are ``ConfigError``
with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servesim import yaml_text
from servesim.cluster.router_config import MODEL_ROUTERS, RouterConfig
from servesim.cluster_config import (  # noqa: F401 - the cluster section's models are part of this module's API
    ChunkCacheConfig,
    ClusterConfig,
    DisaggregationConfig,
    ExpertOffloadConfig,
    KvCompressionConfig,
    KvLinkConfig,
    KvPinningConfig,
    KvTierConfig,
    LoraServingConfig,
    PdControllerConfig,
    PoolConfig,
    PowerConfig,
    PrefillOffloadConfig,
    SemiPdConfig,
    SemiPdControllerConfig,
)
from servesim.errors import ConfigError
from servesim.fleet_config import AutoscalingConfig, FailuresConfig
from servesim.metrics.config import SloTargets
from servesim.perf.steptime import StepTimeParams
from servesim.scheduler.config import SchedulerConfig
from servesim.semantic.config import SemanticCacheConfig
from servesim.workload.config import TraceWorkloadConfig, WorkloadConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)  # finite numbers only


class EngineConfig(BaseModel):
    """Simulator knobs; none of them changes per-request results."""

    model_config = _FROZEN

    fast_path: bool = Field(
        True,
        description=(
            "Fast path: decoding sequences advance as one lockstep group and runs of identical decode iterations "
            "are priced in one event; false = the plain iteration-by-iteration reference (same per-request results, slower)."
        ),
    )
    timeseries_interval_s: float = Field(
        1.0, gt=0, description="Sampling period of the queue/batch/KV time series (simulated seconds)."
    )


class CatalogConfig(BaseModel):
    """Catalog entries added to (or overriding) the built-in models and GPUs."""

    model_config = _FROZEN

    files: list[str] = Field(
        default_factory=list, description="YAML files with `models:` and/or `hardware:` maps, same schema as the built-ins."
    )
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Inline model entries by id.")
    hardware: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Inline GPU entries by id.")


class ScenarioConfig(BaseModel):
    """One run of servesim."""

    model_config = _FROZEN

    name: str = Field("default", description="Scenario name, shown in reports.")
    seed: int = Field(0, ge=0, description="Seed of every random stream of the run.")
    horizon_s: float | None = Field(
        None, gt=0, description="Stop the simulated clock here (seconds); null = run until every request is done."
    )
    workload: WorkloadConfig = Field(
        default_factory=lambda: TraceWorkloadConfig(kind="trace", path="builtin:azure-2023-conv"),
        description="The requests to replay.",
    )
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="The deployment.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Per-replica batch scheduler.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Global router.")
    slo: SloTargets = Field(default_factory=SloTargets, description="Latency targets (SLOs).")
    perf: StepTimeParams = Field(default_factory=StepTimeParams, description="Step-time model efficiencies.")
    calibration: str | None = Field(
        None,
        description=(
            "Calibration YAML written by `servesim calibrate` (path; relative to the scenario file): its fitted "
            "values replace the `perf` defaults, fields set under `perf` still win. Must be fitted for cluster.hardware."
        ),
    )
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Replicas added and removed by a policy, with cold starts and draining; null: a fixed fleet."
    )
    failures: FailuresConfig | None = Field(
        None, description="GPU and node failures with detection and recovery, stragglers, interference, link degradation; null: none."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Simulator knobs.")
    semantic_cache: SemanticCacheConfig | None = Field(
        None, description="A category-aware semantic cache in front of the fleet (docs/operations.md); null: none."
    )
    catalog: CatalogConfig = Field(default_factory=CatalogConfig, description="Extra catalog entries.")

    @model_validator(mode="after")
    def _router_needs(self) -> ScenarioConfig:
        semi = self.cluster.semi_pd
        if semi is not None and semi.controller is not None and (self.slo.ttft_s is None or self.slo.tpot_s is None):
            raise ValueError("cluster.semi_pd.controller steers by the SLOs: set slo.ttft_s and slo.tpot_s")
        if self.router.policy in MODEL_ROUTERS:
            if self.cluster.pools is None:
                raise ValueError(f"router.policy = {self.router.policy!r} routes between models: it needs cluster.pools")
            if self.workload.difficulty is None:
                raise ValueError(f"router.policy = {self.router.policy!r} weighs each request's difficulty: set "
                                 "workload.difficulty (e.g. {a: 1, b: 1} for uniform)")
        self._fleet_needs()
        self._semantic_cache_needs()
        if self.router.policy == "adapter_affinity" and self.cluster.lora is None:
            raise ValueError("router.policy = 'adapter_affinity' needs cluster.lora (replicas holding LoRA adapters)")
        if self.router.policy == "prefix_aware" and not self.cluster.prefix_caching:
            raise ValueError("router.policy = 'prefix_aware' needs cluster.prefix_caching: true (replicas without a "
                             "prefix cache give it nothing to match)")
        return self

    def _fleet_needs(self) -> None:
        """Autoscaling and replica failures run on a colocated fleet of one pool."""
        scaling = self.autoscaling
        f = self.failures
        fails = f is not None and (f.gpu_failures_per_hour > 0 or f.node_failures_per_hour > 0 or bool(f.scripted))
        if scaling is None and not fails:
            return
        c = self.cluster
        if c.power.row is not None:
            raise ValueError("cluster.power.row (a row power budget) does not combine with autoscaling or replica "
                             "failures yet: its controller tracks a fixed set of replicas")
        for name in ("disaggregation", "prefill_offload", "semi_pd", "pools"):
            if getattr(c, name) is not None:
                what = "autoscaling" if scaling is not None else "failures (GPU and node failure rates above 0)"
                raise ValueError(f"{what} needs a colocated cluster of one pool; cluster.{name} is set "
                                 "(failures with both rates 0 keep stragglers, interference and link degradation)")
        if scaling is not None and not scaling.min_replicas <= c.num_replicas <= scaling.max_replicas:
            raise ValueError(f"cluster.num_replicas = {c.num_replicas} is the starting fleet: it must lie within "
                             f"autoscaling.min_replicas = {scaling.min_replicas} and max_replicas = {scaling.max_replicas}")
        if scaling is not None and scaling.elastic is not None:
            steps = scaling.elastic.gpu_steps
            if c.tensor_parallel != steps[0]:
                raise ValueError(f"autoscaling.elastic.gpu_steps starts at {steps[0]} GPUs: set cluster.tensor_parallel "
                                 f"= {steps[0]} (now {c.tensor_parallel})")

    def _semantic_cache_needs(self) -> None:
        cache = self.semantic_cache
        if self.router.policy == "ic_cache" and (cache is None or cache.ic_cache is None):
            raise ValueError("router.policy = 'ic_cache' retrieves examples from the semantic cache: set semantic_cache.ic_cache")
        if cache is None:
            return
        if self.workload.kind in ("agent", "closed_loop"):
            raise ValueError(f"semantic_cache: {self.workload.kind} workloads (closed loops: a request answered by the "
                             "cache would never release its client's next one) are not supported in front of a cache")
        pool = cache.ic_cache.pool if cache.ic_cache is not None else None
        names = [p.name for p in self.cluster.pools or []]
        if pool is not None and pool not in names:
            raise ValueError(f"semantic_cache.ic_cache.pool = {pool!r} names no pool (cluster.pools: {', '.join(names) or 'none'})")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (every default filled in)."""
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- loading


#: The default scenario's SLOs (``examples/default.yaml``'s): TTFT and TPOT targets, seconds.
DEFAULT_SLO = {"ttft_s": 0.5, "tpot_s": 0.05}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ScenarioConfig:
    """Read a scenario file (None = the default scenario) and apply ``key.path=value`` overrides.

    The default scenario is ``examples/default.yaml``: every field's default plus
    ``DEFAULT_SLO``, so that a plain ``servesim run`` reports SLO attainment as that file
    does.  A scenario file without an ``slo`` section has no targets.  Relative file paths
    inside the scenario (trace paths, catalog files) are resolved against the scenario
    file's folder.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        _resolve_paths(raw, Path(path).resolve().parent)
    else:
        raw["slo"] = dict(DEFAULT_SLO)
    overrides = list(overrides)
    sets_kind = any(item.replace(" ", "").startswith(("workload.kind=", "workload=")) for item in overrides)
    if overrides and not sets_kind and not isinstance(raw.get("workload"), dict):
        # Overrides of workload fields refine the default workload.
        raw["workload"] = ScenarioConfig.model_fields["workload"].default_factory().model_dump(mode="json")
    for item in overrides:
        apply_override(raw, item)
    return validate_config(raw)


def validate_config(raw: dict[str, Any]) -> ScenarioConfig:
    """Validate plain data into a ``ScenarioConfig``; ``ConfigError`` on the first problem.

    No field takes an infinite or NaN number: the models say so (``allow_inf_nan=False``),
    and ``_check_finite`` says it for the sections whose models live elsewhere.
    """
    _check_finite(raw, "")
    try:
        config = ScenarioConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
    _check_no_bool_numbers(raw, config.model_dump(), "")
    return config


def _check_no_bool_numbers(raw: Any, resolved: Any, where: str) -> None:
    """``ConfigError`` naming the first ``true``/``false`` a number field took as 1 or 0.

    Validation turns a YAML boolean into a number without a word (``rate_rps: true`` ran at
    1 request per second); comparing what was given with what it became finds every such field.
    """
    if isinstance(raw, bool) and not isinstance(resolved, bool) and isinstance(resolved, (int, float)):
        raise ConfigError(f"config error: {where} = {str(raw).lower()}: Input should be a number, not a boolean")
    if isinstance(raw, dict) and isinstance(resolved, dict):
        for key, item in raw.items():
            if key in resolved:
                _check_no_bool_numbers(item, resolved[key], f"{where}.{key}" if where else str(key))
    elif isinstance(raw, (list, tuple)) and isinstance(resolved, (list, tuple)) and len(raw) == len(resolved):
        for i, (item, out) in enumerate(zip(raw, resolved)):
            _check_no_bool_numbers(item, out, f"{where}.{i}")


def _check_finite(value: Any, where: str) -> None:
    """``ConfigError`` naming the first infinite or NaN float in ``value`` (nested dicts and lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config error: {where} = {value}: Input should be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}.{i}")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. cluster.num_replicas=4")
    try:
        value = yaml_text.safe_load(text)
    except yaml.YAMLError:
        value = text
    set_dotted(raw, key.strip(), value, f"override {item!r}")


def set_dotted(raw: dict[str, Any], path: str, value: Any, label: str) -> None:
    """Set ``a.b.c`` of plain config data in place; missing or null sections become mappings.
    ``ConfigError`` (prefixed with ``label``) when a step of the path is a value, not a section."""
    parts = path.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{label}: {'.'.join(parts[:depth + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(err: ValidationError) -> str:
    """One line for the first error: field path, offending value and what is allowed."""
    first = err.errors()[0]
    loc = _field_path(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return f"config error: {loc}: unknown field{_allowed_fields(first.get('loc', ()))}"
    if kind == "missing":
        return f"config error: {loc}: required field is missing"
    if kind == "union_tag_not_found":
        return f"config error: {loc}.kind: required field is missing (allowed: {_workload_kinds()})"
    if kind == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        return f"config error: {loc}.kind = {tag!r}: unknown kind (allowed: {_workload_kinds()})"
    value = first.get("input")
    msg = first.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    return f"config error: {loc}{shown}: {msg}"


def _workload_models() -> dict[str, type[BaseModel]]:
    from servesim.workload import config as wc

    return {"trace": wc.TraceWorkloadConfig, "synthetic": wc.SyntheticWorkloadConfig, "agent": wc.AgentWorkloadConfig}


def _workload_kinds() -> str:
    return ", ".join(_workload_models())


def _field_path(loc: tuple) -> str:
    # The workload union adds its tag ('trace', 'synthetic') right after
    # 'workload'; drop it there only ('trace' is also a LengthConfig field).
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "workload" and p in _workload_models())]
    return ".".join(parts) or "<root>"


def _allowed_fields(loc: tuple) -> str:
    model: Any = ScenarioConfig
    for i, part in enumerate(loc[:-1]):
        if i == 1 and loc[0] == "workload" and part in _workload_models():
            model = _workload_models()[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        # None for a non-model field (e.g. the workload union, resolved by its tag next).
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    names = list(getattr(model, "model_fields", {}))
    own = set(getattr(model, "__annotations__", {}))
    names = [n for n in names if n in own] + [n for n in names if n not in own]  # a section's own fields first
    return f" (allowed: {', '.join(names)})" if names else ""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"scenario file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read scenario file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"scenario file {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    try:
        data = yaml_text.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario must be a mapping of sections, got {type(data).__name__}")
    return data


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("builtin:") and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists():
                return str(candidate)
        return value

    workload = raw.get("workload")
    if isinstance(workload, dict):
        if "path" in workload:
            workload["path"] = resolve(workload["path"])
        for key in ("prompt_tokens", "output_tokens"):
            lengths = workload.get(key)
            if isinstance(lengths, dict) and "trace" in lengths:
                lengths["trace"] = resolve(lengths["trace"])
    if isinstance(raw.get("calibration"), str):
        raw["calibration"] = resolve(raw["calibration"])
    cache = raw.get("semantic_cache")
    similarity = cache.get("similarity") if isinstance(cache, dict) else None
    if isinstance(similarity, dict) and isinstance(similarity.get("fit_from"), str):
        similarity["fit_from"] = resolve(similarity["fit_from"])
    catalog = raw.get("catalog")
    if isinstance(catalog, dict) and isinstance(catalog.get("files"), list):
        catalog["files"] = [resolve(f) for f in catalog["files"]]
