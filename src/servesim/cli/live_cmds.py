"""Commands against live endpoints: ``replay`` (a scenario's workload sent to an OpenAI-compatible
server, docs/live.md) and ``compare`` (a simulation and a replay side by side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from servesim.cli.app import EXIT_ALL_REJECTED, OverwriteOption, SetOption, app
from servesim.errors import ConfigError

#: Exit status of ``compare --max-error-pct`` when a listed metric's error is over the limit.
EXIT_OVER_LIMIT = 4


@app.command()
def replay(
    scenario: Path = typer.Argument(..., help="Scenario YAML whose workload to send."),
    endpoint: str = typer.Option(..., "--endpoint", help="Base URL of an OpenAI-compatible server "
                                 "(vLLM, SGLang, TGI, servesim serve), e.g. http://127.0.0.1:8000."),
    out: Path = typer.Option(..., "--out", help="Write requests.parquet, token_times.parquet, config.yaml, "
                             "summary.json (and the endpoint's /metrics before and after) here: a new or empty "
                             "folder."),
    model: Optional[str] = typer.Option(None, "--model", help="API model name (default: the first /v1/models lists)."),
    time_scale: float = typer.Option(1.0, "--time-scale",
                                     help="Scenario seconds per wall-clock second (2: twice as fast)."),
    overrides: Optional[List[str]] = SetOption,
    prompt: str = typer.Option("tokens", "--prompt",
                               help="tokens: token ids (default); text: synthetic text, one word per token."),
    max_concurrency: int = typer.Option(512, "--max-concurrency", help="Requests open at once, at most."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds from a request's send to its stream's end."),
    token_ids: bool = typer.Option(True, "--token-ids/--no-token-ids", help="Ask for return_token_ids (vLLM); "
                                   "turn off for servers refusing unknown fields."),
    server_pid: Optional[int] = typer.Option(None, "--server-pid", help="The local server's process id: its CPU "
                                             "(and its children's) is told apart from other processes' noise."),
    overwrite: bool = OverwriteOption,
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
) -> None:
    """Send a scenario's workload to a live endpoint and record every request's timings.

    Times are wall-clock seconds from the replay's start (arrivals: scenario time / --time-scale).
    Exit status 3 (after the summary and the files) when no request finished.
    """
    from servesim.config import load_config
    from servesim.deployment import calibrated
    from servesim.live.replay import ReplayOptions
    from servesim.live.replay import replay as run_replay
    from servesim.out_dir import check_run_dir, write_run_dir
    from servesim.report.table import render_summary

    config = calibrated(load_config(scenario, overrides or []))
    options = ReplayOptions(endpoint, model, time_scale, prompt, max_concurrency, timeout, token_ids, server_pid)
    # No config text: a replay never replaces an earlier folder silently (its results are not reproducible).
    check_run_dir(out, None, overwrite=overwrite)

    def started(num: int, name: str) -> None:
        if not as_json:
            typer.echo(f"replaying up to {num:,} requests of {config.name} to {options.base_url} (model {name}, "
                       f"time scale {time_scale:g})")

    result = run_replay(config, options, on_start=started)
    write_run_dir(out, result.write_files, None, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        render_summary(result.summary)
        typer.echo(_replay_line(result.summary["replay"]))
        typer.echo(f"outputs written to {out}/")
    if result.summary["num_finished"] == 0:
        reasons = ", ".join(f"{r} {n:,}" for r, n in result.summary["failed_by_reason"].items())
        typer.echo(f"error: no request finished ({reasons or 'none was sent'})", err=True)
        raise typer.Exit(EXIT_ALL_REJECTED)


@app.command()
def compare(
    sim_dir: Path = typer.Argument(..., help="A simulation's folder (servesim run --out)."),
    replay_dir: Path = typer.Argument(..., help="A replay's folder of the same workload (servesim replay --out)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    max_error_pct: Optional[float] = typer.Option(
        None, "--max-error-pct",
        help=f"Exit status {EXIT_OVER_LIMIT} when a --metrics error's absolute value exceeds this."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics",
        help="Metrics --max-error-pct checks, comma-separated (default ttft_mean,tpot_mean,e2e_mean)."),
    from_send: bool = typer.Option(
        False, "--from-send", help="Count the replay's latencies from each request's actual send (sent_s), not from "
        "when it was due: a starved client's lateness is not the engine's."),
) -> None:
    """Compare a simulation with a replay: TTFT, TPOT, E2E, throughput, requests in system, counts.

    Errors are (sim - real) / real in percent.
    """
    from servesim.live.compare import DEFAULT_GATE, check_metric_names, compare_folders, gate

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics is not None else list(DEFAULT_GATE)
    check_metric_names(names)
    if metrics is not None and max_error_pct is None:
        raise ConfigError("option --metrics: names what --max-error-pct checks; pass --max-error-pct P too")
    if max_error_pct is not None and not max_error_pct >= 0:
        raise ConfigError(f"option --max-error-pct {max_error_pct:g}: must be >= 0")
    comparison = compare_folders(sim_dir, replay_dir, from_send)
    over = gate(comparison, names, max_error_pct) if max_error_pct is not None else []
    if as_json:
        data = comparison.to_dict()
        if max_error_pct is not None:
            data["gate"] = {"max_error_pct": max_error_pct, "metrics": names, "exceeded": over}
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_comparison(comparison)
    for line in over:
        typer.echo(f"over the limit: {line}", err=True)
    if over:
        raise typer.Exit(EXIT_OVER_LIMIT)


def _print_comparison(comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    from servesim.live.compare import COMPARISON_HEADER, comparison_rows
    from servesim.report.markdown import fmt, pct

    console = Console(width=max(100, Console().width))
    table = Table(title=f"Simulation {comparison.sim.path} vs replay {comparison.real.path}", title_justify="left")
    for i, name in enumerate(COMPARISON_HEADER):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in comparison_rows(comparison):
        table.add_row(*row)
    console.print(table)
    end = comparison.grid_s[-1] if len(comparison.grid_s) else 0.0
    console.print(f"requests in system over time: mean |sim - real| {fmt(comparison.in_system_mean_abs_diff)} "
                  f"requests ({len(comparison.grid_s)} points over 0-{end:.2f} s)")
    cpu = (comparison.real.summary.get("replay") or {}).get("cpu") or {}
    if cpu.get("others_share") is not None:
        console.print(f"replay noise: other processes used {pct(cpu['others_share'])} of the CPU "
                      f"(at most {pct(cpu.get('others_share_max'))} in one sampling interval)")


def _replay_line(section: dict) -> str:
    from servesim.report.markdown import fmt, pct

    lag = section.get("send_lag_s") or {}
    cpu = section.get("cpu") or {}
    noise = ("unknown (no /proc)" if cpu.get("others_share") is None else
             f"{pct(cpu['others_share'])} (at most {pct(cpu.get('others_share_max'))} in one sampling interval)")
    return (f"Replay {section['endpoint']} model {section['model']}: send lag p50 {fmt(lag.get('p50'), 2, 1e3)} ms, "
            f"p99 {fmt(lag.get('p99'), 2, 1e3)} ms, max {fmt(lag.get('max'), 2, 1e3)} ms; "
            f"other processes' CPU {noise}")
