"""``run_sweep``: expand a sweep spec, skip what is recorded, run the rest, record each result.

Resume semantics: a run is done once its row is in ``runs`` (see
``servesim.sweep.store``).  Running a sweep again skips recorded runs
(failed ones too, unless ``retry_failed``), so a sweep killed midway picks
up where it stopped and never records a run twice.
"""

from __future__ import annotations

import json
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from servesim.sweep.axes import RunSpec, build_runs
from servesim.sweep.executors import Executor, RunTask
from servesim.sweep.progress import SweepProgress
from servesim.sweep.spec import SweepSpec
from servesim.sweep.store import ResultStore


@dataclass(frozen=True)
class SweepReport:
    """What one invocation did: runs in the sweep, skipped as recorded, and run now (done / failed, with
    the failed runs' ``(config_hash, error)``)."""

    out_dir: Path
    total: int
    skipped: int
    done: int
    failed: int
    errors: tuple[tuple[str, str], ...] = ()


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep or search: ``done`` of ``total`` runs (or trials) are recorded, so running
    the same command again resumes."""

    def __init__(self, done: int, total: int, label: str = "runs") -> None:
        super().__init__(f"{done} of {total} {label} done")
        self.done, self.total, self.label = done, total, label

    def hint(self) -> str:
        """The line the command prints."""
        return f"interrupted: {self.done} of {self.total} {self.label} done; run the same command again to resume"


@contextmanager
def _commit_uninterrupted() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until it ends, so that a commit is never cut
    (DuckDB would abort it with "Query interrupted"); only the main thread can do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def default_out_dir(name: str) -> Path:
    """``sweeps/<name>`` (relative to the working directory)."""
    return Path("sweeps") / name


def run_sweep(
    spec: SweepSpec,
    spec_dir: Path,
    out_dir: Path,
    executor: Executor,
    *,
    retry_failed: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> SweepReport:
    """Run every run of ``spec`` not yet recorded in ``out_dir``; ``ConfigError`` for a bad spec and
    ``OutputError`` for an ``out_dir`` that holds another sweep's, a search's or a run's files
    (replaced when ``overwrite``) or cannot be written, both before any run."""
    from servesim.out_dir import check_sweep_dir

    runs = build_runs(spec.axes, spec.base, spec_dir)  # validates every config first
    check_sweep_dir(out_dir, "sweep", spec.name, overwrite=overwrite)
    store = ResultStore(out_dir)
    try:
        store.set_meta({"kind": "sweep", "spec_json": spec.model_dump_json(by_alias=True), "name": spec.name})
        statuses = store.statuses()
        todo = [r for r in runs if r.config_hash not in statuses or (retry_failed and statuses[r.config_hash] == "failed")]
        errors: list[tuple[str, str]] = []
        try:
            done, failed = run_and_record(todo, store, executor, progress=progress, errors=errors)
        except SweepInterrupted as stop:
            skipped = len(runs) - len(todo)
            raise SweepInterrupted(skipped + stop.done, len(runs)) from None
    finally:
        store.close()
    return SweepReport(Path(out_dir), len(runs), len(runs) - len(todo), done, failed, tuple(errors))


def run_and_record(runs: list[RunSpec], store: ResultStore, executor: Executor, *, progress: bool = True,
                   label: str = "runs", errors: list | None = None) -> tuple[int, int]:
    """Execute ``runs`` and commit each outcome as it arrives; returns (done, failed), and appends each
    failed run's ``(config_hash, error)`` to ``errors`` when given; ``SweepInterrupted`` (with the runs
    recorded so far) on Ctrl-C."""
    by_hash = {r.config_hash: r for r in runs}
    bar = SweepProgress(len(runs), label, enabled=progress)
    try:
        tasks = (RunTask(r.config_hash, r.config.to_dict()) for r in runs)
        for outcome in executor.run_unordered(tasks):
            run = by_hash[outcome.config_hash]
            with _commit_uninterrupted():  # counted with its commit: a held Ctrl-C reports it as done
                store.commit_run(run.config_hash, json.dumps(run.config.to_dict(), sort_keys=True), run.assignment,
                                 outcome)
                bar.advance(outcome.status != "done")
                if outcome.status != "done" and errors is not None:
                    errors.append((outcome.config_hash, outcome.error))
    except KeyboardInterrupt:
        raise SweepInterrupted(bar.done + bar.failed, len(runs), label) from None
    finally:
        bar.close()
    return bar.done, bar.failed
