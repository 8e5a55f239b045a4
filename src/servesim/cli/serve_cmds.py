"""``servesim serve``: an OpenAI-compatible endpoint timed by the simulator (docs/live.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from servesim.cli.app import SetOption, app
from servesim.errors import ConfigError


@app.command()
def serve(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML file; omit for the default scenario."),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    time_scale: float = typer.Option(
        1.0, "--time-scale", help="Simulated seconds per wall-clock second (10: the engine runs 10x faster than real)."
    ),
    overrides: Optional[List[str]] = SetOption,
    served_model_name: Optional[str] = typer.Option(
        None, "--served-model-name", help="The base model's name in the API (default: the scenario's cluster.model)."
    ),
    max_requests: int = typer.Option(
        1_000_000, "--max-requests", help="Requests this server takes in all (simulation rows, ~80 bytes each)."
    ),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log", help="Log every HTTP request."),
) -> None:
    """Serve the scenario's fleet as an OpenAI-compatible endpoint whose answers the simulator times.

    /v1/completions and /v1/chat/completions (streamed or not), /v1/models, /health and /metrics
    (vLLM's Prometheus metrics).  Ctrl-C stops it.
    """
    from servesim.config import load_config
    from servesim.live.serve.scenario import build_serve_setup
    from servesim.live.serve.server import listen, serve_forever, url_of

    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise ConfigError(f"--time-scale = {time_scale:g}: must be a positive number")
    config = load_config(scenario, overrides or [])
    setup = build_serve_setup(config, max_requests=max_requests, served_model_name=served_model_name)
    sock = listen(host, port)
    typer.echo(f"servesim serve: {setup.describe()}; time scale {time_scale:g}")
    typer.echo(f"OpenAI API at {url_of(sock)}/v1  (metrics at /metrics; Ctrl-C stops)", err=False)
    serve_forever(setup, sock, time_scale, access_log)
    typer.echo("servesim serve: stopped")
