"""``servesim profile``: measure step latencies on this machine's device (see docs/profiling.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from servesim.cli.app import app
from servesim.errors import ConfigError

if TYPE_CHECKING:
    from servesim.profile import ProfileResult, RowSpec


@app.command()
def profile(
    model_id: str = typer.Option(..., "--model", help="Catalog model id whose shape to build, e.g. llama-3-8b."),
    out: Path = typer.Option(..., "-o", "--out", help="Steps CSV to write; device.json is written beside it."),
    backend_name: str = typer.Option("auto", "--backend", help="auto (torch if installed, else numpy), torch, numpy."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if torch sees one, else cpu), cuda or cpu."),
    plan: str = typer.Option("default", "--plan", help="default (the reference grid, 64 rows) or quick (9 rows)."),
    num_layers: Optional[int] = typer.Option(None, "--num-layers", min=1, help="Profile this many layers, not all."),
    repeats: Optional[int] = typer.Option(
        None, "--repeats", min=1, help="Timed runs per row (default: 5 for prefill rows, 10 for the others)."
    ),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed runs before each row's timed ones."),
    catalog_file: Optional[Path] = typer.Option(None, "--catalog", help="YAML file with extra `models:` entries."),
) -> None:
    """Time engine iterations of a model's shape (random weights) and write them as a steps CSV."""
    from servesim.deployment import with_catalog_files
    from servesim.perf.catalog import Catalog
    from servesim.profile import (
        check_profilable, plan_rows, profile_steps, select_backend, write_device_json, write_rows,
    )

    catalog = with_catalog_files(Catalog.default(), [] if catalog_file is None else [catalog_file])
    model = catalog.model(model_id)
    check_profilable(model)
    rows = plan_rows(plan)
    _prepare_output(out)
    backend = select_backend(backend_name, device)
    typer.echo(f"profiling {model.id} on {backend.device_name()} with {backend.name}: plan {plan}, {len(rows)} rows")
    result = profile_steps(
        model, rows, backend, num_layers=num_layers, warmup=warmup, repeats=repeats, on_row=_print_row
    )
    if not result.rows:  # a header-only CSV is no profile: say what is missing instead
        raise ConfigError(_nothing_measured(result, backend.name))
    device_json = out.parent / "device.json"
    try:
        write_rows(out, result.rows)
        write_device_json(device_json, {"backend": backend.name, **backend.device_facts()})
    except OSError as err:
        raise ConfigError(f"option --out {out}: cannot write: {err.strerror or err}") from None
    _print_summary(result, out, device_json)


def _prepare_output(out: Path) -> None:
    """Create ``out``'s folder, or fail now rather than after a possibly long run."""
    if out.is_dir():
        raise ConfigError(f"option --out {out}: is a folder; give the CSV file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"option --out {out}: cannot create folder {out.parent}: {err.strerror or err}") from None


def _nothing_measured(result: ProfileResult, backend_name: str) -> str:
    """The one-line error of a run that measured no row: why each row was skipped, and the remedy."""
    from servesim.profile.backend import GRAPHS_NEED_CUDA
    from servesim.profile.runner import NEEDS_MORE_MEMORY

    reasons = "; ".join(f"{reason}: {count}" for reason, count in sorted(result.skipped.items()))
    remedies = []
    if GRAPHS_NEED_CUDA in result.skipped:
        remedies.append(
            "a CUDA GPU with PyTorch (pip install 'servesim[profile]'; --backend torch --device cuda)"
            if backend_name != "torch" else "a CUDA GPU that PyTorch can see (--device cuda)"
        )
    if NEEDS_MORE_MEMORY in result.skipped:
        remedies.append("fewer layers (--num-layers) or a device with more free memory")
    remedy = " or ".join(remedies) or "a device this plan's rows can run on"
    return (
        f"servesim profile measured no rows on {result.device} ({reasons or 'no rows in the plan'}); "
        f"nothing written; it needs {remedy}"
    )


def _print_row(position: int, total: int, row: RowSpec, outcome: dict[str, Any] | str) -> None:
    done = f"{outcome['median_ms']:.3f} ms" if isinstance(outcome, dict) else f"skipped: {outcome}"
    typer.echo(f"  [{position}/{total}] {row.label()}: {done}")


def _print_summary(result: ProfileResult, out: Path, device_json: Path) -> None:
    layers = f"{result.num_layers} layer{'s' if result.num_layers != 1 else ''}"
    typer.echo(f"rows measured: {len(result.rows)} ({layers}, {result.device})")
    typer.echo(f"rows skipped: {sum(result.skipped.values())}")
    for reason, count in sorted(result.skipped.items()):
        typer.echo(f"  {reason}: {count}")
    typer.echo(f"wrote {out} and {device_json}")
