"""Benchmark commands: ``predict-bench`` and ``validate-bench`` (docs/benchmarks.md).

Both read a benchmark CSV (``servesim.bench.rows``), check every row before
anything runs, then simulate each row in a pool of processes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import List, Optional

import typer

from servesim.cli.app import app
from servesim.errors import ConfigError

CatalogOption = typer.Option(None, "--catalog", help="Extra catalog YAML with models/hardware entries (repeatable).")
CalibrationOption = typer.Option(None, "--calibration", help="Calibration YAML from `servesim calibrate` (for the rows' GPU).")
JobsOption = typer.Option(None, "--jobs", min=1, help="Worker processes (default: the CPUs, at most one per row).")


@app.command("predict-bench")
def predict_bench(
    bench: Path = typer.Argument(..., help="Benchmark CSV: model, hardware, isl, osl, concurrency or request_rate, ..."),
    out: Path = typer.Option(..., "-o", "--out", help="Output CSV: every input column, then the predicted metrics."),
    catalog_files: Optional[List[Path]] = CatalogOption,
    calibration: Optional[Path] = CalibrationOption,
    jobs: Optional[int] = JobsOption,
) -> None:
    """Predict each benchmark point (TTFT, TPOT, E2E, throughput) by a full simulation."""
    from servesim.bench.metrics import METRICS
    from servesim.bench.rows import read_bench_csv

    table = read_bench_csv(bench)
    _check_writable(out, "-o")
    predicted = _predict(table, catalog_files, calibration, jobs)
    columns = list(table.columns) + [m for m in METRICS if m not in table.columns]
    _write_predictions(out, "-o", table, columns, predicted)
    typer.echo(f"{len(table.rows)} benchmark points predicted: {out}")


@app.command("validate-bench")
def validate_bench(
    measured: Path = typer.Argument(..., help="Benchmark CSV with measured_<metric> columns (e.g. measured_ttft_ms_p50)."),
    catalog_files: Optional[List[Path]] = CatalogOption,
    calibration: Optional[Path] = CalibrationOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Write predictions.csv, errors.json and parity.png here."),
    as_json: bool = typer.Option(False, "--json", help="Print the errors as JSON instead of tables."),
    jobs: Optional[int] = JobsOption,
) -> None:
    """Compare predicted benchmark metrics with measured ones: APE per metric, worst rows, parity plot."""
    from servesim.bench.accuracy import (
        MEASURED_PREFIX,
        check_measured,
        errors_dict,
        format_errors,
        measured_metrics,
        metric_errors,
        worst_errors,
    )
    from servesim.bench.metrics import METRICS
    from servesim.bench.rows import read_bench_csv

    table = read_bench_csv(measured, extra=check_measured)
    metrics = measured_metrics(table.columns)
    if not metrics:
        raise ConfigError(f"{measured}: no measured column; name them {MEASURED_PREFIX}<metric>, e.g. "
                          f"{MEASURED_PREFIX}ttft_ms_p50 (metrics: {', '.join(METRICS)})")
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"option --out {out}: exists and is not a folder")
    predicted = _predict(table, catalog_files, calibration, jobs)
    slices = metric_errors(table.rows, predicted)
    worst = worst_errors(table.rows, predicted)
    report = {"source": str(measured), "num_rows": len(table.rows), **errors_dict(slices, worst)}
    if out is not None:
        report["files"] = _write_validation(out, table, predicted, metrics, errors_dict(slices, worst), measured.name)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{measured.name}: {len(table.rows)} benchmark points\n\n{format_errors(slices, worst)}")
    if out is not None:
        typer.echo(f"\nparity plot and tables written to {out}/")


# ---------------------------------------------------------------- helpers
def _predict(table, catalog_files, calibration, jobs) -> list[dict[str, float]]:
    from servesim.bench.predict import check_rows, predict_rows

    scenarios = check_rows(table, [str(f.resolve()) for f in catalog_files or []],
                           str(calibration.resolve()) if calibration is not None else None)
    return predict_rows(scenarios, jobs, [table.where(row) for row in table.rows])


def _cell(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"


def _check_writable(path: Path, option: str) -> None:
    """Fail before the runs, not after them."""
    if path.is_dir():
        raise ConfigError(f"option {option} {path}: is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"option {option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"option {option} {path}: not writable")


def _write_predictions(path: Path, option: str, table, columns: list[str], predicted) -> None:
    from servesim.bench.rows import write_bench_csv

    records = [{**row.raw, **{m: _cell(v) for m, v in p.items()}} for row, p in zip(table.rows, predicted)]
    try:
        write_bench_csv(path, columns, records)
    except OSError as err:
        raise ConfigError(f"option {option} {path}: cannot write: {err.strerror or err}") from None


def _write_validation(out: Path, table, predicted, metrics: list[str], errors: dict, title: str) -> dict[str, str]:
    from servesim.bench.accuracy import MEASURED_PREFIX
    from servesim.bench.metrics import METRICS
    from servesim.report.bench_parity import write_bench_parity

    panels = []
    for metric in metrics:
        pairs = [(float(row.raw[MEASURED_PREFIX + metric]), p[metric]) for row, p in zip(table.rows, predicted)
                 if row.raw.get(MEASURED_PREFIX + metric, "").strip() and float(row.raw[MEASURED_PREFIX + metric]) > 0
                 and p[metric] > 0]
        if pairs:
            panels.append((metric, [m for m, _ in pairs], [p for _, p in pairs]))
    try:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "predictions.csv"
        columns = list(table.columns) + [m for m in METRICS if m not in table.columns]
        _write_predictions(csv_path, "--out", table, columns, predicted)
        json_path = out / "errors.json"
        json_path.write_text(json.dumps(errors, indent=2), encoding="utf-8")
        files = {"csv": str(csv_path), "json": str(json_path)}
        if panels:
            files["png"] = str(write_bench_parity(out / "parity.png", panels, f"{title}: predicted vs measured"))
    except OSError as err:
        raise ConfigError(f"option --out {out}: cannot write: {err.strerror or err}") from None
    return files
