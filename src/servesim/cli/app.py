"""The typer application and the scenario, catalog and trace commands.

Command groups that grow large live in their own ``servesim.cli.*_cmds``
module, imported at the bottom of this file so that they register on ``app``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer
import yaml

from servesim.errors import ConfigError, ServesimError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="servesim: fast, trace-driven simulator of LLM inference serving fleets.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect scenario configs.")
trace_app = typer.Typer(no_args_is_help=True, help="Inspect workload traces.")
app.add_typer(config_app, name="config")
app.add_typer(trace_app, name="trace")

SetOption = typer.Option(None, "--set", help="Override a field: --set cluster.num_replicas=4 (repeatable).")


OverwriteOption = typer.Option(
    False, "--overwrite", help="Replace what --out holds (another run's or sweep's files; never files servesim did not write)."
)


@app.command()
def run(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML file; omit for the default scenario."),
    overrides: Optional[List[str]] = SetOption,
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write requests.parquet, timeseries.parquet, config.yaml, summary.json here "
        "(a new or empty folder, or one holding this same run; see --overwrite)."
    ),
    overwrite: bool = OverwriteOption,
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on long runs."),
    arrivals_from: Optional[Path] = typer.Option(
        None, "--arrivals-from", help="A `servesim replay` folder of this scenario's workload: simulate the arrival "
        "times it actually sent (its sent_s), for `servesim compare --from-send` (docs/live.md)."
    ),
) -> None:
    """Simulate a scenario and print its summary.

    Exit status 3 (after the summary and the files) when every request was rejected.
    """
    from servesim.api import simulate
    from servesim.config import load_config
    from servesim.deployment import calibrated
    from servesim.out_dir import check_run_dir, write_run_dir
    from servesim.report.files import config_yaml
    from servesim.report.progress import RichProgress
    from servesim.report.table import render_summary

    config = load_config(scenario, overrides or [])
    if out is not None:  # fail before a possibly long run, not after it
        check_run_dir(out, config_yaml(calibrated(config).to_dict()), overwrite=overwrite)
    workload = None
    if arrivals_from is not None:
        from servesim.core.rng import RandomStreams
        from servesim.live.as_sent import workload_as_sent
        from servesim.workload.builder import build_workload

        workload = workload_as_sent(build_workload(config.workload, RandomStreams(config.seed)), arrivals_from)
    show_bar = progress and not as_json
    result = simulate(config, progress=(lambda n: RichProgress(n, config.horizon_s)) if show_bar else None,
                      workload=workload)
    if arrivals_from is not None:
        result.summary["arrivals_from"] = str(arrivals_from)
    if out is not None:
        write_run_dir(out, result.write_files, result.config_text(), overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        render_summary(result.summary)
        if out is not None:
            typer.echo(f"outputs written to {out}/")
    nothing_served = _nothing_served(result.summary)
    if nothing_served is not None:
        typer.echo(f"error: {nothing_served}", err=True)
        raise typer.Exit(EXIT_ALL_REJECTED)


# Exit status of a run that completed but served no request: every one was rejected.
EXIT_ALL_REJECTED = 3


def _nothing_served(summary: dict) -> str | None:
    """Why a run served nothing (every request rejected), or None when it served some."""
    total, rejected = summary.get("num_requests", 0), summary.get("num_rejected", 0)
    if total == 0 or rejected < total:
        return None
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in (summary.get("rejected_by_reason") or {}).items())
    return f"every request was rejected ({rejected:,} of {total:,}: {reasons or 'no reason recorded'}); nothing was served"


@config_app.command("show")
def config_show(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML file; omit for the default scenario."),
    overrides: Optional[List[str]] = SetOption,
) -> None:
    """Print the resolved scenario (every default filled in) as YAML."""
    from servesim.config import load_config

    config = load_config(scenario, overrides or [])
    typer.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of scenario files (every field with its unit)."""
    from servesim.config import ScenarioConfig

    typer.echo(json.dumps(ScenarioConfig.model_json_schema(), indent=2))


@config_app.command("docs")
def config_docs() -> None:
    """Print the Markdown reference of every scenario field (docs/scenarios.md)."""
    from servesim.report.config_docs import scenario_docs_markdown

    typer.echo(scenario_docs_markdown(), nl=False)


@app.command()
def catalog(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario whose extra catalog entries to include."),
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON."),
) -> None:
    """List the models and GPUs servesim knows."""
    from servesim.api import build_catalog
    from servesim.config import load_config
    from servesim.report.catalog_table import catalog_rows, render_catalog

    cat = build_catalog(load_config(scenario))
    if as_json:
        typer.echo(json.dumps(catalog_rows(cat), indent=2))
    else:
        render_catalog(cat)


@trace_app.command("stats")
def trace_stats_cmd(
    path: str = typer.Argument(..., help="Trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL) or builtin:azure-2023-conv."),
    fmt: str = typer.Option("auto", "--format", help="auto, azure2023, azure2024, burstgpt or mooncake."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print a trace's statistics: counts, span, rates, lengths, burstiness, prefix reuse."""
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload
    from servesim.workload.config import TraceWorkloadConfig
    from servesim.workload.stats import format_trace_stats, trace_stats

    cfg = _trace_config(TraceWorkloadConfig, path, fmt)
    stats = trace_stats(build_workload(cfg, RandomStreams(0)))
    typer.echo(json.dumps(stats, indent=2, sort_keys=True) if as_json else format_trace_stats(stats))


def _trace_config(model, path: str, fmt: str):
    from pydantic import ValidationError

    from servesim.config import format_validation_error

    try:
        return model(kind="trace", path=path, format=fmt)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err).replace("config error: ", "option: ")) from None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every user-facing error is one line (``error_line``), exit 2;
    anything else is a servesim bug: its traceback and a request to report it, exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except Exception as err:  # noqa: BLE001 - sorted into the user's mistakes and servesim's bugs
        line = error_line(err)
        if line is None:
            traceback.print_exc()
            typer.echo("error: this is a bug in servesim; please report it with the command and the "
                       "traceback above", err=True)
            sys.exit(1)
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)


def error_line(err: BaseException) -> str | None:
    """The one-line message of a user-facing error, or None for a servesim bug.

    User-facing: ``ServesimError`` except ``InvariantError``, a file that cannot be read or
    written (``OSError``), a file that is not UTF-8 text (``UnicodeDecodeError``) and YAML that
    does not parse.  The modules reading user files raise ``ServesimError``s naming the file;
    the rest is the safety net for paths that do not.
    """
    from servesim.errors import InvariantError

    if isinstance(err, InvariantError) or not isinstance(err, _USER_ERRORS):
        return None
    if isinstance(err, OSError):
        where = f": {err.filename}" if err.filename else ""
        text = f"{err.strerror or type(err).__name__}{where}"
    elif isinstance(err, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({err.reason} at byte {err.start})"
    elif isinstance(err, yaml.YAMLError):
        text = f"invalid YAML: {err}"
    else:
        text = str(err)
    return " ".join(text.split()) or type(err).__name__


_USER_ERRORS = (ServesimError, OSError, UnicodeDecodeError, yaml.YAMLError)


if __name__ == "__main__":  # pragma: no cover
    main()

import servesim.cli.perf_cmds  # noqa: E402,F401
import servesim.cli.profile_cmds  # noqa: E402,F401
import servesim.cli.sweep_cmds  # noqa: E402,F401
import servesim.cli.report_cmds  # noqa: E402,F401
import servesim.cli.bench_cmds  # noqa: E402,F401
import servesim.cli.live_cmds  # noqa: E402,F401
import servesim.cli.probe_cmds  # noqa: E402,F401
import servesim.cli.serve_cmds  # noqa: E402,F401
