"""The typer application and the scenario, catalog and trace commands.

Command groups that grow large live in their own ``servesim.cli.*_cmds``
module, imported at the bottom of this file so that they register on ``app``.
"""

from __future__ import annotations

import json
import sys
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


@app.command()
def run(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML file; omit for the default scenario."),
    overrides: Optional[List[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Write requests.parquet, timeseries.parquet, config.yaml, summary.json here."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on long runs."),
) -> None:
    """Simulate a scenario and print its summary."""
    from servesim.api import simulate
    from servesim.config import load_config
    from servesim.report.progress import RichProgress
    from servesim.report.table import render_summary

    config = load_config(scenario, overrides or [])
    if out is not None and out.exists() and not out.is_dir():
        # Fail before a possibly long run, not after it.
        raise ConfigError(f"option --out {out}: exists and is not a folder")
    show_bar = progress and not as_json
    result = simulate(config, progress=(lambda n: RichProgress(n, config.horizon_s)) if show_bar else None)
    if out is not None:
        try:
            result.write(out)
        except OSError as err:
            raise ConfigError(f"option --out {out}: cannot write outputs: {err.strerror or err}") from None
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        render_summary(result.summary)
        if out is not None:
            typer.echo(f"outputs written to {out}/")


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
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except ServesimError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()

import servesim.cli.perf_cmds  # noqa: E402,F401
import servesim.cli.profile_cmds  # noqa: E402,F401
import servesim.cli.sweep_cmds  # noqa: E402,F401
import servesim.cli.report_cmds  # noqa: E402,F401
import servesim.cli.bench_cmds  # noqa: E402,F401
