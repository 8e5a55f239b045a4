"""Calibration files: the fitted step-time parameters of one GPU, as YAML.

``servesim calibrate`` writes one; a scenario names it with a top-level
``calibration: path.yaml``.  The layout::

    format: servesim-calibration/1
    hardware: h100                    # catalog id the fit is valid for
    servesim_version: 0.1.0
    source: llama-3-8b_steps.csv      # the measured steps file
    num_rows: 64
    params:                           # the fitted StepTimeParams fields
      gemm_efficiency: {value: 0.767, unit: fraction of the dense tensor peak}
      ...
    frontend_latency_s: {value: 0.0104, unit: s}   # optional: the API server's time per request
    fit:                              # informational: how well it fits
      noise: 0.1
      in_sample: [{label: decode graphed, num_rows: 23, median_ape_pct: ..., ...}, ...]

Only ``hardware``, ``params`` and ``frontend_latency_s`` matter when a file is
applied (the last only where the scenario leaves ``cluster.frontend_latency_s``
null; steps probed from a live endpoint carry it, ``servesim probe``); the
rest documents where the numbers came from.  Problems raise ``ConfigError`` with
one line naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from servesim import yaml_text
from servesim.errors import ConfigError
from servesim.perf.steptime_params import FIELD_UNITS, StepTimeParams

__all__ = ["FORMAT", "Calibration", "apply_calibration", "calibration_yaml", "load_calibration"]

FORMAT = "servesim-calibration/1"


@dataclass(frozen=True)
class Calibration:
    """One calibration: the GPU it was fitted on and the fitted parameter values.

    params: ``StepTimeParams`` field name -> value (the field's unit).
    fit: free-form description of the fit (residuals, LOGO, ...), kept as read.
    """

    hardware: str
    params: dict[str, float]
    source: str = ""
    num_rows: int = 0
    servesim_version: str = ""
    fit: dict[str, Any] = field(default_factory=dict)
    frontend_latency_s: float | None = None


def calibration_yaml(calibration: Calibration) -> str:
    """The calibration as the YAML text of a calibration file."""
    doc = {
        "format": FORMAT,
        "hardware": calibration.hardware,
        "servesim_version": calibration.servesim_version,
        "source": calibration.source,
        "num_rows": calibration.num_rows,
        "params": {
            name: {"value": _round(value), "unit": FIELD_UNITS.get(name, "")}
            for name, value in calibration.params.items()
        },
        "fit": calibration.fit,
    }
    if calibration.frontend_latency_s is not None:
        doc["frontend_latency_s"] = {"value": _round(calibration.frontend_latency_s), "unit": "s"}
        doc["fit"] = doc.pop("fit")  # keep the informational part last
    header = "# servesim step-time calibration (servesim calibrate); see docs/performance-model.md\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


def load_calibration(path: str | PathLike[str]) -> Calibration:
    """Read a calibration file; ``ConfigError`` naming the file and field on any problem."""
    path = Path(path)
    try:
        doc = yaml_text.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read calibration file {path}: {err.strerror or err}") from None
    except yaml.YAMLError:
        raise ConfigError(f"calibration file {path} is not valid YAML") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"calibration file {path}: expected a mapping with 'hardware' and 'params'")
    if doc.get("format", FORMAT) != FORMAT:
        raise ConfigError(f"calibration file {path}: format {doc.get('format')!r} is not {FORMAT!r}")
    hardware = doc.get("hardware")
    if not isinstance(hardware, str) or not hardware:
        raise ConfigError(f"calibration file {path}: field 'hardware' must name a catalog GPU id")
    params = _read_params(path, doc.get("params"))
    fit = doc.get("fit") if isinstance(doc.get("fit"), dict) else {}
    return Calibration(
        hardware,
        params,
        str(doc.get("source", "")),
        int(doc.get("num_rows", 0) or 0),
        str(doc.get("servesim_version", "")),
        fit,
        _read_frontend(path, doc.get("frontend_latency_s")),
    )


def _read_frontend(path: Path, raw: Any) -> float | None:
    """The optional ``frontend_latency_s`` entry (seconds, at least 0), or None when absent."""
    if raw is None:
        return None
    value = raw.get("value") if isinstance(raw, dict) else raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ConfigError(f"calibration file {path}: frontend_latency_s = {value!r}: must be a number of seconds >= 0")
    return float(value)


def apply_calibration(
    perf: StepTimeParams,
    calibration: Calibration,
    hardware_id: str,
    where: str = "calibration",
    hardware_field: str = "cluster.hardware",
) -> StepTimeParams:
    """``perf`` with the calibration's values, except fields set explicitly in ``perf``.

    An explicit field is one in ``perf.model_fields_set`` (written under
    ``perf:`` in the scenario).  ``ConfigError`` when the calibration was
    fitted for another GPU than ``hardware_id``, or a value is out of range.
    ``where`` names the file and ``hardware_field`` the setting that chose
    the GPU, in messages.
    """
    name = where
    if calibration.hardware != hardware_id:
        raise ConfigError(
            f"{name} was fitted for hardware {calibration.hardware!r}, but {hardware_field} is {hardware_id!r}; "
            "calibrate on that GPU's steps or drop the calibration"
        )
    update = {k: v for k, v in calibration.params.items() if k not in perf.model_fields_set}
    try:
        return StepTimeParams.model_validate({**perf.model_dump(), **update})
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field_name = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{name}: params.{field_name} = {first['input']!r}: {first['msg']}") from None


def _read_params(path: Path, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"calibration file {path}: field 'params' must map parameter names to values")
    known = StepTimeParams.model_fields
    out = {}
    for name, entry in raw.items():
        if name not in known:
            raise ConfigError(f"calibration file {path}: params.{name}: unknown parameter (allowed: {', '.join(known)})")
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"calibration file {path}: params.{name} = {value!r}: must be a number")
        out[name] = float(value)
    return out


def _round(value: float) -> float:
    # Four significant digits: far below the fit's uncertainty, easy to read.
    return float(f"{value:.4g}")
