"""Step-time commands: ``predict-steps``, ``validate`` and ``calibrate``.

All three read a steps CSV (``servesim.perf.steprows``) and price each row
on one GPU of ``--hardware``.  Parameters are the defaults, or a calibration
file's (``--calibration``) on top of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from servesim.cli.app import app
from servesim.errors import ConfigError

HardwareOption = typer.Option(..., "--hardware", help="GPU catalog id the rows ran on (see `servesim catalog`).")
CalibrationOption = typer.Option(None, "--calibration", help="Calibration YAML from `servesim calibrate` (same GPU).")
CatalogOption = typer.Option(None, "--catalog", help="Extra catalog YAML with models/hardware entries (repeatable).")

# A calibration whose in-sample median error is above this (percent) is refused without --force.
SUSPECT_FIT_PCT = 25.0

# Output columns of predict-steps: name -> StepTime field (seconds).
_COMPONENTS = {
    "predicted_ms": "total_s",
    "gemm_ms": "gemm_s",
    "elementwise_ms": "elementwise_s",
    "attention_prefill_ms": "attention_prefill_s",
    "attention_decode_ms": "attention_decode_s",
    "communication_ms": "communication_s",
    "overhead_ms": "overhead_s",
}


@app.command("predict-steps")
def predict_steps(
    steps: Path = typer.Argument(..., help="Steps CSV: model, kind, prefill_lens, decode_batch, decode_ctx, graphed[, num_layers]."),
    hardware: str = HardwareOption,
    out: Path = typer.Option(..., "-o", "--out", help="Output CSV: every input column plus predicted_ms and its parts (ms)."),
    calibration: Optional[Path] = CalibrationOption,
    catalog_files: Optional[List[Path]] = CatalogOption,
) -> None:
    """Predict each step's time (ms) and its named components."""
    from servesim.perf.steppricer import StepPricer
    from servesim.perf.steprows import read_steps_csv, write_steps_csv

    table = read_steps_csv(steps)
    catalog, gpu, params = _setup(hardware, calibration, catalog_files)
    parts = StepPricer(table.rows, gpu, catalog).breakdowns(params)
    columns = list(table.columns) + [name for name in _COMPONENTS if name not in table.columns]
    records = []
    for raw, part in zip(table.raw, parts):
        # An input column with one of these names is replaced in place.
        records.append({**raw, **{name: f"{getattr(part, attr) * 1e3:.6g}" for name, attr in _COMPONENTS.items()}})
    try:
        write_steps_csv(out, columns, records)
    except OSError as err:
        raise ConfigError(f"option -o {out}: cannot write: {err.strerror or err}") from None
    typer.echo(f"{len(records)} steps predicted on {hardware}: {out}")


@app.command()
def validate(
    steps: Path = typer.Argument(..., help="Measured steps CSV (with median_ms)."),
    hardware: str = HardwareOption,
    calibration: Optional[Path] = CalibrationOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Write parity.png, parity.html, predictions.csv and errors.json here."),
    as_json: bool = typer.Option(False, "--json", help="Print the errors as JSON instead of tables."),
    logo: bool = typer.Option(False, "--logo", help="Leave-one-group-out: predict each group from a fit on the others."),
    catalog_files: Optional[List[Path]] = CatalogOption,
) -> None:
    """Compare predictions with measured step times: APE per kind and graphed, worst rows, parity plot."""
    from servesim.perf.calibrate import leave_one_group_out
    from servesim.perf.steppricer import StepPricer
    from servesim.perf.steprows import read_steps_csv
    from servesim.perf.validate import error_slices, errors_as_dict, slice_label, worst_rows

    if logo and calibration is not None:
        raise ConfigError("options --logo and --calibration exclude each other: --logo fits its own parameters")
    table = read_steps_csv(steps, require_measured=True)
    catalog, gpu, params = _setup(hardware, calibration, catalog_files)
    if logo:
        predicted = leave_one_group_out(table.rows, gpu, catalog).predicted_s
        mode = "leave-one-group-out"
    else:
        predicted = StepPricer(table.rows, gpu, catalog).times_s(params)
        mode = f"calibration {calibration}" if calibration is not None else "default parameters"
    slices = error_slices(table.rows, predicted)
    worst = worst_rows(table.rows, predicted)
    report = {"source": str(steps), "hardware": hardware, "mode": mode, **errors_as_dict(slices, worst)}
    if out is not None:
        series = [slice_label(row) for row in table.rows]
        report["files"] = _write_validation(out, table, predicted, series, slices, worst, f"{steps.name} on {hardware} ({mode})")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_errors(f"{steps.name} on {hardware}, {mode}", slices, worst)
    if out is not None:
        typer.echo(f"parity plot and tables written to {out}/")


@app.command()
def calibrate(
    steps: Path = typer.Argument(..., help="Measured steps CSV (with median_ms)."),
    hardware: str = HardwareOption,
    out: Path = typer.Option(..., "-o", "--out", help="Calibration YAML to write."),
    logo: bool = typer.Option(False, "--logo", help="Also run leave-one-group-out and record its errors."),
    force: bool = typer.Option(
        False, "--force", help=f"Write the calibration even when the fit's median error exceeds {SUSPECT_FIT_PCT:g}% "
        "or the rows' hardware column names another GPU (a warning instead of an error)."
    ),
    step_overhead: bool = typer.Option(
        False, "--step-overhead", help="Also fit fixed_step_overhead_s, the per-step time outside the forward pass "
        "(scheduling, sampling, output): for steps timed inside a serving engine, e.g. vLLM's iteration log."
    ),
    catalog_files: Optional[List[Path]] = CatalogOption,
) -> None:
    """Fit the step-time model's physical parameters to measured steps; write a calibration YAML.

    Refuses fewer rows than fitted parameters; refuses (unless --force) rows whose ``hardware``
    column names another GPU than --hardware, and a fit whose median error exceeds
    SUSPECT_FIT_PCT percent: such a calibration would make every simulated latency wrong.
    """
    import servesim
    from servesim.perf.calibrate import NOISE, STEP_OVERHEAD_FIELDS, fit_step_params, leave_one_group_out
    from servesim.perf.calibration_file import Calibration, calibration_yaml
    from servesim.perf.steprows import read_steps_csv
    from servesim.perf.steptime_params import FITTED_FIELDS
    from servesim.perf.validate import error_slices

    fields = STEP_OVERHEAD_FIELDS if step_overhead else FITTED_FIELDS
    table = read_steps_csv(steps, require_measured=True)
    if len(table.rows) < len(fields):
        raise ConfigError(
            f"steps file {steps}: {len(table.rows)} measured row{'s' if len(table.rows) != 1 else ''} cannot fit "
            f"{len(fields)} parameters; calibrate needs at least {len(fields)} rows "
            "(`servesim profile` writes 64)"
        )
    catalog, gpu, _ = _setup(hardware, None, catalog_files)
    _suspect(_other_hardware(table, steps, hardware), force)
    fit = fit_step_params(table.rows, gpu, catalog, fields=fields)
    in_sample = error_slices(table.rows, fit.predicted_s)
    median_pct = in_sample[-1].median_ape_pct  # the "all" slice
    bad_fit = None
    if median_pct > SUSPECT_FIT_PCT:
        bad_fit = (
            f"the fit's median error is {median_pct:.0f}% (over {SUSPECT_FIT_PCT:g}%): the rows do not look like "
            f"{hardware} running the catalog's models"
        )
        if not force:
            _print_fit(fit, in_sample, None, gpu)
            _suspect(bad_fit + f"; {out} not written", force)
    record = {"noise": NOISE, "in_sample": [_slice_dict(s) for s in in_sample]}
    logo_slices = None
    if logo:
        logo_slices = error_slices(table.rows, leave_one_group_out(table.rows, gpu, catalog, fields=fields).predicted_s)
        record["leave_one_group_out"] = [_slice_dict(s) for s in logo_slices]
    frontend_s = _frontend_latency_s(table, steps)
    cal = Calibration(hardware, fit.values, steps.name, fit.num_rows, servesim.__version__, record, frontend_s)
    try:
        out.write_text(calibration_yaml(cal), encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"option -o {out}: cannot write: {err.strerror or err}") from None
    _print_fit(fit, in_sample, logo_slices, gpu)
    if frontend_s is not None:
        typer.echo(f"\nfront end's time per request (frontend_ms column): {frontend_s * 1e3:.2f} ms")
    typer.echo(f"\ncalibration written to {out}")
    if bad_fit is not None:
        _suspect(bad_fit, force)


def _other_hardware(table, steps: Path, hardware: str) -> str | None:
    """Why the rows' ``hardware`` column (when there is one) says they ran on another GPU, or None."""
    if "hardware" not in table.columns:
        return None
    named = sorted({raw.get("hardware", "").strip() for raw in table.raw} - {"", hardware})
    if not named:
        return None
    return f"steps file {steps}: its hardware column names {', '.join(map(repr, named))}, not --hardware {hardware!r}"


def _suspect(problem: str | None, force: bool) -> None:
    """Refuse a suspect calibration (one error line, exit 2), or with --force warn on stderr and go on."""
    if problem is None:
        return
    if not force:
        raise ConfigError(f"{problem}; pass --force to calibrate anyway")
    typer.echo(f"warning: {problem}", err=True)


def _frontend_latency_s(table, steps: Path) -> float | None:
    """The median of the ``frontend_ms`` column (``servesim probe`` writes it: the endpoint's
    time per request outside the engine's steps), in seconds; None without the column."""
    if "frontend_ms" not in table.columns:
        return None
    values = []
    for index, raw in enumerate(table.raw, start=1):
        text = (raw.get("frontend_ms") or "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 <= value < float("inf"):
            raise ConfigError(f"steps file {steps} row {index} (line {index + 1}): column 'frontend_ms' = {text!r}: "
                              "must be a number of milliseconds >= 0")
        values.append(value)
    if not values:
        return None
    import statistics

    return statistics.median(values) / 1e3


def _print_fit(fit, in_sample, logo_slices, gpu) -> None:
    from servesim.perf.calibrate import priors_for
    from servesim.perf.steptime_params import FIELD_UNITS
    from servesim.perf.validate import format_error_table

    priors = priors_for(gpu)
    typer.echo(f"{'parameter':28s} {'fitted':>10s} {'prior':>10s}  unit")
    for name, value in fit.values.items():
        typer.echo(f"{name:28s} {value:10.4g} {priors[name].center:10.4g}  {FIELD_UNITS[name]}")
    typer.echo(f"\nin-sample error ({fit.num_rows} rows)\n{format_error_table(in_sample)}")
    if logo_slices is not None:
        typer.echo(f"\nleave-one-group-out error\n{format_error_table(logo_slices)}")


# ---------------------------------------------------------------- helpers
def _setup(hardware: str, calibration: Optional[Path], catalog_files: Optional[List[Path]]):
    """The catalog, the GPU and the step-time parameters the options ask for."""
    from servesim.deployment import read_calibration, with_catalog_files
    from servesim.perf.calibration_file import apply_calibration
    from servesim.perf.catalog import Catalog
    from servesim.perf.steptime_params import StepTimeParams

    catalog = with_catalog_files(Catalog.default(), catalog_files or [])
    gpu = catalog.hardware(hardware)
    params = StepTimeParams()
    if calibration is not None:
        where = f"calibration file {calibration}"
        params = apply_calibration(params, read_calibration(calibration), hardware, where, "--hardware")
    return catalog, gpu, params


def _write_validation(out: Path, table, predicted, series, slices, worst, title: str) -> dict[str, str]:
    from servesim.perf.steprows import write_steps_csv
    from servesim.perf.validate import ape_pct, errors_as_dict
    from servesim.report.parity import write_parity_report

    measured = [row.measured_s for row in table.rows]
    try:
        files = write_parity_report(
            out, [m * 1e3 for m in measured], [p * 1e3 for p in predicted], series, slices, worst, title
        )
        ape = ape_pct(predicted, measured)
        records = [
            {**raw, "predicted_ms": f"{p * 1e3:.6g}", "ape_pct": f"{a:.3f}"} for raw, p, a in zip(table.raw, predicted, ape)
        ]
        columns = list(table.columns) + [c for c in ("predicted_ms", "ape_pct") if c not in table.columns]
        write_steps_csv(out / "predictions.csv", columns, records)
        (out / "errors.json").write_text(json.dumps(errors_as_dict(slices, worst), indent=2), encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"option --out {out}: cannot write: {err.strerror or err}") from None
    return {k: str(v) for k, v in {**files, "csv": out / "predictions.csv", "json": out / "errors.json"}.items()}


def _print_errors(title: str, slices, worst) -> None:
    from servesim.perf.validate import format_error_table, format_worst_rows

    typer.echo(f"{title}\n\n{format_error_table(slices)}\n\nworst rows\n{format_worst_rows(worst)}")


def _slice_dict(s) -> dict[str, float | int | str]:
    return {
        "label": s.label,
        "num_rows": s.num_rows,
        "median_ape_pct": round(s.median_ape_pct, 2),
        "p90_ape_pct": round(s.p90_ape_pct, 2),
        "max_ape_pct": round(s.max_ape_pct, 2),
    }
