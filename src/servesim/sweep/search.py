"""``run_search``: an SLO-aware deployment search with Optuna over a space of config fields.

Trials are asked for in batches (``batch_size``, default the executor's
workers) and told back once the batch has run (Optuna's ask/tell), so they
run on the same executors as sweeps and land in the same ``runs`` table; a
configuration already recorded there (an earlier search, or a sampler
proposing it again) is not simulated twice.

Each trial is, in order:

1. configured: the base scenario with the trial's values, validated
   (an invalid combination is pruned with the config error as its reason);
2. assessed before simulating (``servesim.sweep.capacity``): pruned if the
   model does not fit its GPUs (``DeploymentError``), if it holds more than
   ``prune.max_gpus`` GPUs, or if its capacity bound is below the target
   rate;
3. simulated, then scored: objectives are summary metrics flattened with
   '__' or ``cost_usd_per_hr`` / ``num_gpus`` (the deployment's price and
   size); each constraint contributes ``value - max`` or ``min - value``
   (<= 0 when met) to Optuna's ``constraints_func``, so TPE and NSGA-II
   prefer feasible trials.

Pruned trials are told to Optuna as PRUNED, failed runs as FAIL.  The answer
is computed from the trials, not Optuna's ``best_trial`` (which ignores
constraints): ``pareto`` flags the feasible trials no other feasible trial
dominates (one objective: those with the best value).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim.config import validate_config
from servesim.errors import ConfigError, ServesimError
from servesim.sweep.axes import RunSpec, apply_assignment, base_raw, config_hash, configure
from servesim.sweep.capacity import LoadProfile, assess, load_profile
from servesim.sweep.executors import Executor, one_line
from servesim.sweep.progress import SweepProgress
from servesim.sweep.runner import SweepInterrupted, run_and_record
from servesim.sweep.spec import ParamRange, SearchSpec
from servesim.sweep.store import ResultStore, axis_column, sql_type

#: Objectives known before simulating, from the deployment itself.
DEPLOYMENT_METRICS = ("cost_usd_per_hr", "num_gpus")
_INFEASIBLE = 1e9  # a constraint on a metric the run did not define (e.g. no request finished)


def _has_native_constraints() -> bool:
    try:
        from optuna.trial import Trial
    except ImportError:  # pragma: no cover - optuna is a dependency
        return False
    return hasattr(Trial, "set_constraint")


_NATIVE_CONSTRAINTS = _has_native_constraints()


@dataclass
class TrialRecord:
    """One trial: its values, what became of it, and its scores."""

    number: int
    params: dict[str, Any]
    state: str  # 'complete' | 'pruned' | 'failed'
    config_hash: str | None = None
    reason: str | None = None  # why pruned or failed
    feasible: bool = False
    values: dict[str, float | None] = field(default_factory=dict)  # objectives and constrained metrics
    pareto: bool = False

    @property
    def pruned(self) -> bool:
        return self.state == "pruned"


@dataclass(frozen=True)
class SearchOutcome:
    """The search's trials and its answer: the best feasible trials (one objective) or the Pareto front."""

    out_dir: Path
    spec: SearchSpec
    trials: list[TrialRecord]

    @property
    def front(self) -> list[TrialRecord]:
        """Trials flagged ``pareto``, one per distinct config, ordered by the first objective."""
        seen, out = set(), []
        for t in sorted((t for t in self.trials if t.pareto), key=self._rank):
            if t.config_hash not in seen:
                seen.add(t.config_hash)
                out.append(t)
        return out

    def _rank(self, t: TrialRecord) -> tuple:
        """Objectives (best first), then, to break ties, the constrained metrics with the most slack."""
        key = [t.values[o.metric] * (1 if o.direction == "minimize" else -1) for o in self.spec.objectives]
        for c in self.spec.constraints:
            value = t.values.get(c.metric)
            key.append(0.0 if value is None else (value if c.max is not None else -value))
        return (*key, t.number)

    @property
    def best(self) -> TrialRecord | None:
        """The first trial of the front (the optimum, with one objective); None if no trial was feasible."""
        front = self.front
        return front[0] if front else None


def run_search(spec: SearchSpec, spec_dir: Path, out_dir: Path, executor: Executor, *,
               progress: bool = True, overwrite: bool = False) -> SearchOutcome:
    """Run the search; ``ConfigError`` for a bad spec and ``OutputError`` for an ``out_dir`` that
    holds another output (replaced when ``overwrite``) or cannot be written, both before any trial."""
    import optuna

    from servesim.limits import check_runs
    from servesim.metrics.names import check_metric_names
    from servesim.out_dir import check_sweep_dir

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_runs(spec.trials, {"trials": spec.trials}, "search")
    # A misspelt metric is found now, not after the first batch of trials.
    check_metric_names([o.metric for o in spec.objectives], [c.metric for c in spec.constraints])
    raw = base_raw(spec.base, spec_dir)
    _check_space(spec, raw)
    check_sweep_dir(out_dir, "search", spec.name, overwrite=overwrite)
    study = optuna.create_study(directions=[o.direction for o in spec.objectives], sampler=_sampler(spec))
    if spec.sampler.kind == "grid":
        _enqueue_grid(study, spec)
    num_trials = spec.trials if spec.sampler.kind != "grid" else min(spec.trials, _grid_size(spec))
    batch = spec.batch_size or max(executor.workers, 1)
    store = ResultStore(out_dir)
    records: list[TrialRecord] = []
    loads: dict[str, LoadProfile | None] = {}
    bar = SweepProgress(num_trials, "trials", enabled=progress)
    try:
        store.set_meta({"kind": "search", "spec_json": spec.model_dump_json(by_alias=True), "name": spec.name})
        while len(records) < num_trials:
            asked = [study.ask() for _ in range(min(batch, num_trials - len(records)))]
            batch_records = _run_batch(spec, raw, asked, store, executor, loads)
            for trial, record in zip(asked, batch_records):
                _tell(study, trial, record, spec)
                bar.advance(record.state == "failed")
            records += batch_records
            _flag_front(records, spec)
            _write_trials(store, spec, records)
    except KeyboardInterrupt:
        raise SweepInterrupted(len(records), num_trials, "trials") from None
    finally:
        bar.close()
        store.close()
    return SearchOutcome(Path(out_dir), spec, records)


# ---------------------------------------------------------------- one batch


def _run_batch(spec: SearchSpec, raw: dict, asked: list, store: ResultStore, executor: Executor,
               loads: dict) -> list[TrialRecord]:
    """Configure, prune, simulate (what is not recorded yet) and score a batch of asked trials."""
    records, to_run = [], []
    for trial in asked:
        params = {name: _suggest(trial, name, space) for name, space in spec.space.items()}
        record = TrialRecord(trial.number, params, "pruned")
        records.append(record)
        try:
            config = configure(raw, params)
            key = json.dumps(config.workload.model_dump(mode="json"), sort_keys=True) + str(config.seed)
            if key not in loads:
                loads[key] = load_profile(config) if spec.prune.capacity else None
            facts = assess(config, loads[key])
        except ServesimError as err:  # an invalid combination, or the model does not fit its GPUs
            record.reason = one_line(err)
            continue
        record.reason = _prune_reason(spec, facts, loads[key])
        record.values = {"cost_usd_per_hr": facts.usd_per_hr, "num_gpus": float(facts.num_gpus)}
        record.config_hash = config_hash(config)
        if record.reason is None:
            to_run.append((record, RunSpec(params, config, record.config_hash)))
    recorded = store.statuses()
    fresh = {run.config_hash: run for _, run in to_run if run.config_hash not in recorded}
    run_and_record(list(fresh.values()), store, executor, progress=False)
    for record, run in to_run:
        _score(record, store.run_row(run.config_hash), spec)
    return records


def _prune_reason(spec: SearchSpec, facts, load: LoadProfile | None) -> str | None:
    """Why a deployment is ruled out before simulating, or None."""
    limit = spec.prune.max_gpus
    if limit is not None and facts.num_gpus > limit:
        return f"needs {facts.num_gpus} GPUs > prune.max_gpus = {limit}"
    if spec.prune.capacity and facts.bound is not None and load is not None:
        target = spec.prune.target_rps if spec.prune.target_rps is not None else load.rate_rps
        if facts.bound.max_rps < target:
            return f"capacity bound {facts.bound.max_rps:.3g} req/s < target {target:.3g} req/s"
    return None


def _score(record: TrialRecord, row: dict[str, Any] | None, spec: SearchSpec) -> None:
    """Fill a simulated trial's state, values and feasibility from its recorded run."""
    if row is None or row["status"] != "done":
        record.state = "failed"
        record.reason = row["error"] if row is not None else "no result recorded"
        return
    record.state = "complete"
    metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for i, name in enumerate([o.metric for o in spec.objectives] + [c.metric for c in spec.constraints]):
        if name not in DEPLOYMENT_METRICS:
            if name not in row:  # no run has this metric: a misspelt name, not an undefined value
                where = f"objectives.{i}" if i < len(spec.objectives) else f"constraints.{i - len(spec.objectives)}"
                known = ", ".join(k for k in ("ttft_s__p99", "tpot_s__p99", "slo__goodput_rps", "slo__attainment",
                                              "energy_per_token_j", "cost__usd_per_million_output_tokens") if k in row)
                raise ConfigError(f"{where}.metric = {name!r}: not a metric of the run's summary (e.g. {known}; "
                                  "every column of the runs table, or cost_usd_per_hr, num_gpus)")
            value = metrics.get(name)
            record.values[name] = None if value is None or not math.isfinite(value) else float(value)
    violations = _violations(record, spec)
    record.feasible = all(v <= 0 for v in violations) and all(record.values.get(o.metric) is not None
                                                              for o in spec.objectives)


def _violations(record: TrialRecord, spec: SearchSpec) -> list[float]:
    """Per constraint, how far it is missed (<= 0: met)."""
    out = []
    for c in spec.constraints:
        value = record.values.get(c.metric)
        if value is None:
            out.append(_INFEASIBLE)
            continue
        worst = -math.inf
        if c.max is not None:
            worst = max(worst, value - c.max)
        if c.min is not None:
            worst = max(worst, c.min - value)
        out.append(worst)
    return out


def _tell(study, trial, record: TrialRecord, spec: SearchSpec) -> None:
    import optuna

    n = max(len(spec.constraints), 1)
    if record.state == "complete":
        values = [record.values.get(o.metric) for o in spec.objectives]
        if all(v is not None for v in values):
            _set_constraints(trial, _violations(record, spec) or [0.0])
            study.tell(trial, values)
            return
    _set_constraints(trial, [_INFEASIBLE] * n)
    state = optuna.trial.TrialState.PRUNED if record.state == "pruned" else optuna.trial.TrialState.FAIL
    study.tell(trial, state=state)


def _set_constraints(trial, violations: list[float]) -> None:
    """Hand the sampler the trial's constraint values (<= 0: met): ``Trial.set_constraint`` where Optuna
    has it (5.0 on), else a user attribute read by ``constraints_func``."""
    if _NATIVE_CONSTRAINTS:
        for i, value in enumerate(violations):
            trial.set_constraint(f"c{i}", value)
    else:
        trial.set_user_attr("constraints", violations)


# ---------------------------------------------------------------- the answer


def pareto_mask(points: list[list[float]], directions: list[str]) -> list[bool]:
    """True for each point no other point dominates (no worse in every objective, better in one)."""
    signed = [[v if d == "minimize" else -v for v, d in zip(p, directions)] for p in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [not any(dominates(other, p) for other in signed) for p in signed]


def _flag_front(records: list[TrialRecord], spec: SearchSpec) -> None:
    feasible = [r for r in records if r.feasible]
    directions = [o.direction for o in spec.objectives]
    mask = pareto_mask([[r.values[o.metric] for o in spec.objectives] for r in feasible], directions)
    for r in records:
        r.pareto = False
    for r, on_front in zip(feasible, mask):
        r.pareto = on_front


def _write_trials(store: ResultStore, spec: SearchSpec, records: list[TrialRecord]) -> None:
    """Replace the ``trials`` table with ``records`` (one transaction, one bulk insert from Arrow)."""
    import pyarrow as pa

    metrics = list(dict.fromkeys([o.metric for o in spec.objectives] + [c.metric for c in spec.constraints]))
    arrow_type = {"DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "VARCHAR": pa.string()}
    columns = {
        "trial": pa.array([r.number for r in records], pa.int32()),
        "config_hash": pa.array([r.config_hash for r in records], pa.string()),
        "state": pa.array([r.state for r in records], pa.string()),
        "feasible": pa.array([r.feasible for r in records], pa.bool_()),
        "pruned": pa.array([r.pruned for r in records], pa.bool_()),
        "reason": pa.array([r.reason for r in records], pa.string()),
        **{m: pa.array([r.values.get(m) for r in records], pa.float64()) for m in metrics},
        "pareto": pa.array([r.pareto for r in records], pa.bool_()),
    }
    for name in spec.space:
        values = [r.params[name] for r in records]
        kinds = {sql_type(v) for v in values}
        kind = kinds.pop() if len(kinds) == 1 else "VARCHAR"
        columns[axis_column(name)] = pa.array([_axis_value(v, kind) for v in values], arrow_type[kind])
    db = store.db
    db.register("_new_trials", pa.table(columns))
    db.execute("BEGIN TRANSACTION")
    try:
        db.execute("DROP TABLE IF EXISTS trials")
        db.execute("CREATE TABLE trials AS SELECT * FROM _new_trials")
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise
    finally:
        db.unregister("_new_trials")


def _axis_value(value: Any, kind: str) -> Any:
    """A searched value as its column stores it: JSON text in a VARCHAR column, floats for DOUBLE."""
    if kind == "VARCHAR" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if kind == "DOUBLE" and value is not None:
        return float(value)
    return value


# ---------------------------------------------------------------- Optuna plumbing


def _primitive(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in values)


def _suggest(trial, name: str, space: ParamRange) -> Any:
    """The trial's value of one field (choices that are not plain values are suggested by index)."""
    if space.choice is not None:
        if _primitive(space.choice):
            return trial.suggest_categorical(name, space.choice)
        return space.choice[trial.suggest_categorical(name, list(range(len(space.choice))))]
    if space.integers is not None:
        lo, hi = space.integers
        return trial.suggest_int(name, lo, hi, step=space.step, log=space.log)
    lo, hi = space.reals
    return trial.suggest_float(name, lo, hi, log=space.log)


def _grid_size(spec: SearchSpec) -> int:
    return math.prod(len(space.grid_values()) for space in spec.space.values())


def _enqueue_grid(study, spec: SearchSpec) -> None:
    """Enqueue every point of the space (first field outermost).  Optuna's GridSampler is not used: it
    stops the study from inside ``tell``, which ask/tell does not allow."""
    import itertools

    names = list(spec.space)
    grids = []
    for space in spec.space.values():
        values = space.grid_values()
        grids.append(values if _primitive(values) else list(range(len(values))))
    for point in itertools.product(*grids):
        study.enqueue_trial(dict(zip(names, point)), skip_if_exists=False)


def _sampler(spec: SearchSpec):
    import optuna

    kind, seed = spec.sampler.kind, spec.sampler.seed

    def constraints(trial) -> list[float]:
        return trial.user_attrs.get("constraints", [_INFEASIBLE] * max(len(spec.constraints), 1))

    extra = {} if _NATIVE_CONSTRAINTS else {"constraints_func": constraints}

    if kind in ("random", "grid"):  # grid: every point is enqueued (_enqueue_grid); random fills nothing then
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2" or (kind == "auto" and len(spec.objectives) > 1):
        return optuna.samplers.NSGAIISampler(seed=seed, **extra,
                                             population_size=min(50, max(4, spec.trials // 4)))
    return optuna.samplers.TPESampler(seed=seed, **extra,
                                      n_startup_trials=min(10, max(1, spec.trials // 4)))


def _check_space(spec: SearchSpec, raw: dict) -> None:
    """Refuse, before any trial, a space field that names no scenario field, a value the field itself
    rejects (whatever the other fields), and a model or GPU id the catalog does not have.  Values
    refused only in some combinations are left to the trials (pruned with the reason)."""
    from servesim.deployment import build_catalog

    catalog = build_catalog(configure(raw, {}))
    lookups = {"cluster.model": catalog.model, "cluster.hardware": catalog.hardware}
    for name, space in spec.space.items():
        if space.choice is not None:
            values = space.choice
        else:
            values = list(space.integers if space.integers is not None else space.reals)
        for value in values:
            try:
                validate_config(apply_assignment(raw, {name: value}))
                if name in lookups:
                    lookups[name](value)
            except ServesimError as err:
                text = str(err)
                if "unknown field" in text or "is a value, not a section" in text or f": {name} = " in text \
                        or name in lookups:
                    raise ConfigError(f"space.{name}: {text}") from None
