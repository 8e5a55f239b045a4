"""Sweep and search commands: ``servesim sweep`` and ``servesim search`` (docs/sweeps.md).

Thin: flags to an executor and a spec, the work in ``servesim.sweep``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from servesim.cli.app import app

OutOption = typer.Option(None, "--out", help="Output folder (default sweeps/<spec name>); re-running the same spec resumes it.")
OverwriteOption = typer.Option(
    False, "--overwrite", help="Replace what --out holds when it is another sweep's, search's or run's output."
)
WorkersOption = typer.Option(
    2, "--workers", help="Runs at once: local worker processes (0: in this process) or Ray CPUs; must be >= 0."
)
RayOption = typer.Option(False, "--ray", help="Run on a local Ray instance started for this command.")
RayAddressOption = typer.Option(None, "--ray-address", help="Run on an existing Ray cluster (e.g. ray://head:10001 or auto).")
_SHOWN_ERRORS = 5  # failed runs listed after a sweep; the rest are in the runs table

ProgressOption = typer.Option(True, "--progress/--no-progress", help="Show runs done, failed and remaining.")


@contextmanager
def _interruptible(executor) -> Iterator[None]:
    """Close ``executor`` after the work; on Ctrl-C stop its workers, print how many runs are recorded
    and how to resume, and exit 130 (no traceback: the results so far are safe, docs/sweeps.md)."""
    from servesim.sweep.runner import SweepInterrupted

    aborted = False
    try:
        yield
    except KeyboardInterrupt as stop:
        aborted = True
        executor.close(abort=True)
        if isinstance(stop, SweepInterrupted):
            typer.echo(stop.hint(), err=True)
        else:
            typer.echo("interrupted before the first run was recorded; run the same command again to start over",
                       err=True)
        raise typer.Exit(130) from None
    finally:
        if not aborted:
            executor.close()


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="Sweep spec YAML: name, base scenario, axes (grid, zip, random)."),
    out: Optional[Path] = OutOption,
    overwrite: bool = OverwriteOption,
    workers: int = WorkersOption,
    ray: bool = RayOption,
    ray_address: Optional[str] = RayAddressOption,
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run again the runs recorded as failed."),
    progress: bool = ProgressOption,
) -> None:
    """Run a sweep of scenarios; results go to OUT/results.duckdb and OUT/runs/<config hash>/."""
    from servesim.sweep.executors import make_executor
    from servesim.sweep.runner import default_out_dir, run_sweep
    from servesim.sweep.spec import SweepSpec, load_spec

    parsed = load_spec(spec, SweepSpec)
    out_dir = out or default_out_dir(parsed.name)
    executor = make_executor(workers, ray, ray_address)
    with _interruptible(executor):
        report = run_sweep(parsed, spec.resolve().parent, out_dir, executor, retry_failed=retry_failed,
                           progress=progress, overwrite=overwrite)
    for config_hash, error in report.errors[:_SHOWN_ERRORS]:
        typer.echo(f"failed {config_hash}: {error}", err=True)
    if len(report.errors) > _SHOWN_ERRORS:
        typer.echo(f"... and {len(report.errors) - _SHOWN_ERRORS} more failed runs (runs.error)", err=True)
    typer.echo(f"{report.total} runs: {report.skipped} already recorded, {report.done} done, "
               f"{report.failed} failed; results in {report.out_dir}/results.duckdb")


@app.command()
def search(
    spec: Path = typer.Argument(..., help="Search spec YAML: base scenario, space, constraints (SLOs), objectives."),
    out: Optional[Path] = OutOption,
    overwrite: bool = OverwriteOption,
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials to run (overrides the spec's trials)."),
    workers: int = WorkersOption,
    ray: bool = RayOption,
    ray_address: Optional[str] = RayAddressOption,
    progress: bool = ProgressOption,
) -> None:
    """Search for the cheapest deployment meeting the SLOs (or a Pareto front of several objectives)."""
    from servesim.report.search_table import render_search
    from servesim.sweep.executors import make_executor
    from servesim.sweep.runner import default_out_dir
    from servesim.sweep.search import run_search
    from servesim.sweep.spec import SearchSpec, load_spec

    parsed = load_spec(spec, SearchSpec)
    if trials is not None:
        if trials < 1:
            from servesim.errors import ConfigError

            raise ConfigError(f"option --trials {trials}: must be >= 1")
        parsed = parsed.model_copy(update={"trials": trials})
    out_dir = out or default_out_dir(parsed.name)
    executor = make_executor(workers, ray, ray_address)
    with _interruptible(executor):
        outcome = run_search(parsed, spec.resolve().parent, out_dir, executor, progress=progress,
                             overwrite=overwrite)
    render_search(outcome)
