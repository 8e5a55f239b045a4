"""Leave-one-model-out fit of the vLLM engine's host and glue costs on the measured H100 runs.

Called by ``python benchmarks/e2e_vllm_h100.py --fit``.  Three numbers no kernel
table shows are fitted (servesim.perf.engines.VLLM_HOST):

* ``glue_per_layer_s``: GPU time per layer of the small kernels between the timed
  ones (norms, rotary, cache writes, activation) inside a CUDA graph;
* ``fixed_step_overhead_s``: the host's scheduling and bookkeeping per step (it
  hides behind the GPU under asynchronous scheduling unless the GPU is faster);
* ``frontend_latency_s``: the API server's fixed time per request.

The objective is the sum over the stages that are not overloaded of the squared
log errors of mean TTFT, TPOT and mean E2E, plus a weak pull towards the
physical starting values (one factor of 2.7 costs as much as one stage missed by
10%).  Each model is predicted by a fit on the other three; the fit on all four
is what ships.  Stages are shortened to ``FIT_STAGE_S`` inside the fit (steady
state is reached within a minute); the reported errors use whole stages.
"""

from __future__ import annotations

import json
import math

import numpy as np
from scipy.optimize import minimize

from e2e_vllm_h100 import MODELS, evaluate, print_table, score

NAMES = ("glue_per_layer_s", "fixed_step_overhead_s", "frontend_latency_s")
START = np.array([15e-6, 2.0e-3, 5e-3])  # physical starting values (engines.VLLM_HOST's priors)
FIT_STAGE_S = 200.0
PRIOR_WEIGHT = 0.1  # a log error of 1 on a parameter costs as much as one metric missed by 10% (log 0.1)


def _launches_per_layer_s(tp: int) -> float:
    from servesim.perf.catalog import Catalog
    from servesim.perf.engines import _kernel_values

    return _kernel_values(Catalog.default().hardware("h100"), "bf16", "bf16", tp).get("_launches_per_layer_s", 0.0)


def perf_for(values: np.ndarray, runs: dict) -> dict[str, dict]:
    """Per model, the scenario overrides that set the three fitted values."""
    glue, fixed, frontend = (float(v) for v in values)
    out = {}
    for stages in runs.values():
        model = MODELS[stages[0]["model"]]
        tp = int(stages[0]["tensor_parallel"])
        out[model] = {"per_layer_overhead_s": _launches_per_layer_s(tp) + glue, "fixed_step_overhead_s": fixed,
                      "frontend_latency_s": frontend}
    return out


def _loss(rows: list[dict], values: np.ndarray) -> float:
    total = 0.0
    for r in rows:
        m, p = r["measured"], r["predicted"]
        if m["overloaded"]:
            continue
        for key in ("ttft_mean", "tpot", "e2e_mean"):
            pred = p[key]
            total += (math.log(pred / m[key]) / 0.1) ** 2 if math.isfinite(pred) and pred > 0 else 1e4
    total += float(np.sum((np.log(values / START) / 1.0) ** 2)) * (PRIOR_WEIGHT / 0.1) ** 2
    return total


def fit(runs: dict, jobs: int, arrival: str) -> np.ndarray:
    """The three values minimising the objective on ``runs`` (not overloaded ones only)."""
    calm = {n: s for n, s in runs.items() if s[0]["workload"] != "reasoning"}
    cache: dict[tuple, float] = {}

    def objective(z: np.ndarray) -> float:
        values = START * np.exp(z)
        key = tuple(np.round(z, 4))
        if key not in cache:
            rows = evaluate(calm, perf_for(values, calm), jobs, arrival, FIT_STAGE_S)
            cache[key] = _loss(rows, values)
        return cache[key]

    result = minimize(objective, np.zeros(len(START)), method="Nelder-Mead",
                      options={"maxfev": 36, "xatol": 0.02, "fatol": 0.5, "initial_simplex": _simplex()})
    return START * np.exp(result.x)


def _simplex() -> np.ndarray:
    steps = np.eye(len(START)) * 0.7
    return np.vstack([np.zeros(len(START)), steps])


def fit_report(runs: dict, jobs: int, arrival: str) -> int:
    models = sorted({MODELS[s[0]["model"]] for s in runs.values()})
    held_rows = []
    fitted = {}
    for held in models:
        train = {n: s for n, s in runs.items() if MODELS[s[0]["model"]] != held}
        test = {n: s for n, s in runs.items() if MODELS[s[0]["model"]] == held}
        values = fit(train, jobs, arrival)
        fitted[held] = values
        held_rows += evaluate(test, perf_for(values, test), jobs, arrival)
        print(f"held out {held}: fitted on the others " + ", ".join(f"{n}={v:.4g}" for n, v in zip(NAMES, values)),
              flush=True)
    print("\nLeave-one-model-out predictions (each model from a fit on the other three):")
    print_table(held_rows)
    print("LOMO " + json.dumps(score(held_rows)))
    values = fit(runs, jobs, arrival)
    print("\nFit on all four models (ships as servesim.perf.engines.VLLM_HOST): "
          + ", ".join(f"{n}={v:.4g}" for n, v in zip(NAMES, values)))
    rows = evaluate(runs, perf_for(values, runs), jobs, arrival)
    print("in-sample " + json.dumps(score(rows)))
    return 0
