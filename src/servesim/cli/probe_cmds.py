"""``servesim probe``: a live endpoint's step times as a steps CSV for ``servesim calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from servesim.cli.app import OverwriteOption, app
from servesim.errors import ConfigError


@app.command()
def probe(
    endpoint: str = typer.Option(..., "--endpoint", help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000."),
    out: Path = typer.Option(..., "-o", "--out", help="Steps CSV to write (probe.json and catalog.yaml are written beside it)."),
    model: Optional[str] = typer.Option(None, "--model", help="API model name; default: the first /v1/models lists."),
    catalog_model: Optional[str] = typer.Option(
        None, "--catalog-model", help="Catalog id the rows name (servesim's model); default: the API model name."
    ),
    model_config: Optional[Path] = typer.Option(
        None, "--model-config", help="The served model's Hugging Face config.json: also write <out stem>.catalog.yaml "
        "with its catalog entry, for `servesim calibrate --catalog` and the scenario's catalog.files."
    ),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Largest decode batch to probe (at most the engine's --max-num-seqs)."),
    max_step_tokens: int = typer.Option(
        2048, "--max-step-tokens", min=32, help="The engine's token budget per step (--max-num-batched-tokens)."
    ),
    max_model_len: Optional[int] = typer.Option(
        None, "--max-model-len", min=64, help="Longest sequence; default: what /v1/models says (vLLM), else 2048."
    ),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs of each probe; rows keep the median."),
    quick: bool = typer.Option(False, "--quick", help="A third of the grid: a smoke test, not a calibration."),
    prompt: str = typer.Option("tokens", "--prompt", help="'tokens' (token-id prompts, exact lengths) or 'text' (one word per token)."),
    server_pid: Optional[int] = typer.Option(
        None, "--server-pid", help="The local server's process id: its CPU is not counted as other processes' noise."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probes' prompt token ids."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Per-request timeout (s)."),
    recheck: Optional[Path] = typer.Option(
        None, "--recheck", help="An earlier probe's steps CSV: re-measure a tenth of its grid (decode batches at the "
        "middle context, two prompt lengths) into -o and report the engine's drift since (drift_pct in probe.json)."
    ),
    overwrite: bool = OverwriteOption,
) -> None:
    """Recover a live engine's step times from its client side: decode batches, prompts taken in
    beside decoding streams, idle time to first token.  Writes the steps CSV that `servesim
    calibrate --step-overhead` fits (docs/live.md).  Run it on a quiet machine: other processes'
    CPU share is measured per row (others_cpu) but not subtracted.  With --recheck, tell whether
    a calibration from an earlier probe still holds: the median ratio of re-measured rows to
    its rows."""
    import asyncio

    from servesim.live.endpoint import Endpoint
    from servesim.live.probe import COLUMNS, probe_endpoint
    from servesim.perf.steprows import write_steps_csv

    sidecars = [out.with_suffix(".probe.json")] + ([out.with_suffix(".catalog.yaml")] if model_config else [])
    for path in [out, *sidecars]:
        if path.exists() and not overwrite:
            raise ConfigError(f"option -o {out}: {path} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"option -o {out}: folder {out.parent} does not exist")
    if server_pid is not None:
        from servesim.live.cpu_share import check_pid

        check_pid(server_pid)
    recorded = None
    if recheck is not None:
        from servesim.perf.steprows import read_steps_csv

        recorded = list(read_steps_csv(recheck, require_measured=True).raw)
    catalog_entry = None
    if model_config is not None:
        from servesim.perf.hf_config import model_entry_from_hf_config

        catalog_entry = model_entry_from_hf_config(model_config, catalog_model or model_config.parent.name)

    result = asyncio.run(probe_endpoint(
        Endpoint(endpoint, timeout, prompt), model, catalog_model, max_batch, max_step_tokens, max_model_len,
        repeats=repeats, quick=quick, recheck=recheck is not None, seed=seed, server_pid=server_pid, say=typer.echo))
    if recorded is not None:
        from servesim.live.probe import drift

        result.report["recheck"] = {"against": str(recheck), **drift(recorded, result.rows)}
    write_steps_csv(out, COLUMNS, result.rows)
    out.with_suffix(".probe.json").write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    if catalog_entry is not None:
        import yaml

        model_id = result.report["catalog_model"]
        catalog_entry["name"] = model_id
        text = "# servesim catalog entry written by `servesim probe --model-config` from " + str(model_config) + "\n"
        text += yaml.safe_dump({"models": {model_id: catalog_entry}}, sort_keys=False)
        out.with_suffix(".catalog.yaml").write_text(text, encoding="utf-8")
    checks = result.report.get("batch_checks_ok")
    if checks is False:
        typer.echo("warning: the endpoint's vllm:iteration_tokens_total disagreed with the tokens a decode probe sent "
                   f"(see {out.with_suffix('.probe.json')})", err=True)
    typer.echo(f"{len(result.rows)} rows written to {out}" + "".join(f", {p}" for p in sidecars))
    if recorded is not None:
        typer.echo(f"drift since {recheck}: {result.report['recheck']['drift_pct']:+.1f}% "
                   f"(median over {len(result.report['recheck']['rows'])} rows of measured / recorded step)")
