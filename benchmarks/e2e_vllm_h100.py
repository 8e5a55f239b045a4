"""Replay the 24 load stages of 16 measured vLLM v0.15.1 runs on H100 through servesim.

Usage:
    python benchmarks/e2e_vllm_h100.py [--json] [--jobs N] [--set perf.FIELD=VALUE]...
    python benchmarks/e2e_vllm_h100.py --fit [--jobs N]    # leave-one-model-out fit of the engine's host costs

Each run (``benchmarks/data/vllm_h100_runs.csv``, copied from
shared/validation/vllm-h100-runs) becomes one scenario: its model on
``tensor_parallel`` H100s with the server's token budget, batch cap and model
length, vLLM's defaults for the rest (BF16, 0.9 of GPU memory, prefix caching,
chunked prefill, CUDA graphs, asynchronous scheduling), and inference-perf's
shared_prefix workload (10 system prompts x 10 questions, resent in a shuffled
cycle, fixed outputs with ignore_eos) at the run's constant-rate stages, back
to back.  Per stage: measured and predicted mean / p90 / p99 E2E and TTFT, and
TPOT = (E2E mean - TTFT mean) / (max_output_tokens - 1), with absolute
percentage errors (TPOT has no measured percentiles: the client's own per-token columns divide by
re-tokenised counts, see the data's README).  A stage is overloaded when its requests finishing inside
the stage fall short of the offered rate by more than 5% (measured: failed
requests or achieved rate short by 5%); overloaded stages are scored apart.

``--json`` prints one line: e2e_mean_ape_median, tpot_ape_median,
ttft_mean_ape_median, e2e_p90_ape_median (percent, over the stages both call
not overloaded), n_stages, overload_agreement (of 24).

``--fit`` fits the engine's host and glue costs (``servesim.perf.engines.VLLM_HOST``)
on three models and predicts the fourth, for each model in turn, and prints
the held-out errors and the fit on all four.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RUNS_CSV = Path(__file__).parent / "data" / "vllm_h100_runs.csv"

# The runs' Hugging Face ids and servesim's catalog ids.
MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "codellama/CodeLlama-34b-Instruct-hf": "codellama-34b",
}
OVERLOAD_SHORTFALL = 0.05


def load_runs(path: Path = RUNS_CSV) -> dict[str, list[dict]]:
    """The stages of each run, in stage order, as dicts of the CSV's columns."""
    runs: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["run"], []).append(row)
    for stages in runs.values():
        stages.sort(key=lambda r: int(r["stage"]))
    return runs


def run_scenario(stages: list[dict], perf: dict | None = None, arrival: str = "constant") -> dict:
    """The scenario of one run (all its stages back to back)."""
    first = stages[0]
    system, question = int(first["system_prompt_tokens"]), int(first["question_tokens"])
    # The server's prompt is ~25 tokens longer than system + question (special tokens, joins).
    extra = max(0, round(float(first["prompt_tokens_mean"]) - system - question))
    scenario = {
        "name": first["run"],
        "seed": 0,
        "workload": {
            "kind": "shared_prefix",
            "num_system_prompts": int(first["num_system_prompts"]),
            "users_per_system_prompt": int(first["users_per_system_prompt"]),
            "system_prompt_tokens": system,
            "question_tokens": question,
            "extra_prompt_tokens": extra,
            "output_tokens": int(first["max_output_tokens"]),
            "stages": [{"rate_rps": float(s["rate_rps"]), "duration_s": float(s["duration_s"])} for s in stages],
            "arrival": arrival,
        },
        "cluster": {
            "engine": "vllm",
            "engine_version": "0.15.1",
            "model": MODELS[first["model"]],
            "hardware": "h100",
            "tensor_parallel": int(first["tensor_parallel"]),
            "max_model_len": int(first["max_model_len"]),
        },
        "scheduler": {
            "max_num_seqs": int(first["max_num_seqs"]),
            "max_num_batched_tokens": int(first["max_num_batched_tokens"]),
        },
        "engine": {"timeseries_interval_s": 10.0},
    }
    if perf:
        perf = dict(perf)
        if "frontend_latency_s" in perf:
            scenario["cluster"]["frontend_latency_s"] = perf.pop("frontend_latency_s")
        scenario["perf"] = perf
    return scenario


def measured(stage: dict) -> dict:
    """The stage's measured metrics (seconds) and whether it was overloaded."""
    out_tokens = int(stage["max_output_tokens"])
    e2e, ttft = float(stage["e2e_mean_s"]), float(stage["ttft_mean_s"])
    achieved = float(stage["requests_per_s"])
    return {
        "e2e_mean": e2e, "e2e_p90": float(stage["e2e_p90_s"]), "e2e_p99": float(stage["e2e_p99_s"]),
        "ttft_mean": ttft, "ttft_p90": float(stage["ttft_p90_s"]), "ttft_p99": float(stage["ttft_p99_s"]),
        "tpot": (e2e - ttft) / (out_tokens - 1),
        "overloaded": int(stage["failed"]) > 0 or achieved < (1 - OVERLOAD_SHORTFALL) * float(stage["rate_rps"]),
    }


def simulate_run(args: tuple[list[dict], dict | None, str]) -> list[dict]:
    """Predicted metrics of each stage of one run."""
    import servesim

    stages, perf, arrival = args[:3]
    if len(args) > 3 and args[3]:
        # Shortened stages (a fit's inner loop): steady state sets in within a minute.
        stages = [dict(s, duration_s=str(min(float(s["duration_s"]), args[3]))) for s in stages]
    result = servesim.simulate(run_scenario(stages, perf, arrival))
    req = result.requests
    arrival_s = np.asarray(req.arrival_s, dtype=float)
    first = np.asarray(req.first_token_s, dtype=float)
    finish = np.asarray(req.finish_s, dtype=float)
    out = []
    start = 0.0
    for stage in stages:
        rate, duration = float(stage["rate_rps"]), float(stage["duration_s"])
        end = start + duration
        mine = (arrival_s >= start) & (arrival_s < end)
        done = mine & np.isfinite(finish)
        e2e = finish[done] - arrival_s[done]
        ttft = first[done] - arrival_s[done]
        # Overloaded: over the stage's second half (past its ramp) fewer requests finish than arrive.
        half = start + duration / 2
        finished = np.count_nonzero((finish >= half) & (finish < end))
        arrived = np.count_nonzero((arrival_s >= half) & (arrival_s < end))
        overloaded = finished < (1 - OVERLOAD_SHORTFALL) * arrived
        out_tokens = int(stage["max_output_tokens"])
        e2e_mean = float(np.mean(e2e)) if len(e2e) else math.inf
        ttft_mean = float(np.mean(ttft)) if len(ttft) else math.inf
        out.append({
            "e2e_mean": e2e_mean, "e2e_p90": _pct(e2e, 90), "e2e_p99": _pct(e2e, 99),
            "ttft_mean": ttft_mean, "ttft_p90": _pct(ttft, 90), "ttft_p99": _pct(ttft, 99),
            "tpot": (e2e_mean - ttft_mean) / (out_tokens - 1),
            "overloaded": bool(overloaded),
        })
        start = end
    return out


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else math.inf


def _ape(pred: float, meas: float) -> float:
    return abs(pred - meas) / meas * 100.0


def evaluate(runs: dict[str, list[dict]], perf_by_model: dict[str, dict] | None = None, jobs: int = 2,
             arrival: str = "constant", max_stage_s: float | None = None) -> list[dict]:
    """One row per stage: run, model, stage, measured and predicted metrics."""
    names = list(runs)
    tasks = [(runs[n], (perf_by_model or {}).get(MODELS[runs[n][0]["model"]]), arrival, max_stage_s) for n in names]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(simulate_run, tasks))
    else:
        results = [simulate_run(t) for t in tasks]
    rows = []
    for name, predicted in zip(names, results):
        for stage, pred in zip(runs[name], predicted):
            rows.append({"run": name, "model": MODELS[stage["model"]], "workload": stage["workload"],
                         "stage": int(stage["stage"]), "rate_rps": float(stage["rate_rps"]),
                         "measured": measured(stage), "predicted": pred})
    return rows


METRICS = ("e2e_mean", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p90", "ttft_p99", "tpot")


def score(rows: list[dict]) -> dict:
    """Median APEs over the stages neither side calls overloaded, and the overload agreement."""
    scored = [r for r in rows if not r["measured"]["overloaded"] and not r["predicted"]["overloaded"]]
    apes = {m: [_ape(r["predicted"][m], r["measured"][m]) for r in scored] for m in METRICS}
    return {
        "e2e_mean_ape_median": _median(apes["e2e_mean"]),
        "tpot_ape_median": _median(apes["tpot"]),
        "ttft_mean_ape_median": _median(apes["ttft_mean"]),
        "e2e_p90_ape_median": _median(apes["e2e_p90"]),
        "n_stages": len(scored),
        "overload_agreement": sum(r["measured"]["overloaded"] == r["predicted"]["overloaded"] for r in rows),
    }


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 2) if values else math.nan


def print_table(rows: list[dict], out=sys.stdout) -> None:
    head = (f"{'model':<14} {'workload':<9} {'st':>2} {'rps':>5}  {'E2E mean ms':>19} {'err':>6}  "
            f"{'E2E p90 ms':>19} {'err':>6}  {'E2E p99 ms':>19}  {'TTFT mean ms':>15} {'err':>6}  "
            f"{'TTFT p90':>15}  {'TTFT p99':>15}  {'TPOT ms':>13} {'err':>6}  overload")
    print(head, file=out)
    for r in rows:
        m, p = r["measured"], r["predicted"]

        def pair(key: str, width: int = 19, nd: int = 0) -> str:
            text = f"{m[key] * 1e3:.{nd}f} / {p[key] * 1e3:.{nd}f}"
            return f"{text:>{width}}"

        def err(key: str) -> str:
            return f"{(p[key] - m[key]) / m[key] * 100:+6.1f}"

        flag = f"{'yes' if m['overloaded'] else 'no'} / {'yes' if p['overloaded'] else 'no'}"
        print(f"{r['model']:<14} {r['workload']:<9} {r['stage']:>2} {r['rate_rps']:>5g}  {pair('e2e_mean')} "
              f"{err('e2e_mean')}  {pair('e2e_p90')} {err('e2e_p90')}  {pair('e2e_p99')}  "
              f"{pair('ttft_mean', 15, 1)} {err('ttft_mean')}  {pair('ttft_p90', 15, 1)}  {pair('ttft_p99', 15, 1)}  "
              f"{pair('tpot', 13, 2)} {err('tpot')}  {flag}", file=out)
    print("(measured / predicted; errors in percent, predicted vs measured)", file=out)


def parse_sets(items: list[str]) -> dict:
    perf = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.startswith("perf.") or not value:
            raise SystemExit(f"error: --set {item!r}: expected perf.FIELD=VALUE")
        perf[key[5:]] = float(value)
    return perf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one line of summary statistics as JSON")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--arrival", default="constant", choices=["constant", "poisson", "inference_perf"])
    parser.add_argument("--set", action="append", default=[], metavar="perf.FIELD=VALUE",
                        help="override a step-model parameter for every run")
    parser.add_argument("--fit", action="store_true", help="leave-one-model-out fit of the engine's host costs")
    args = parser.parse_args(argv)
    runs = load_runs()
    if args.fit:
        from e2e_fit import fit_report  # benchmarks/e2e_fit.py

        return fit_report(runs, args.jobs, args.arrival)
    perf = parse_sets(args.set)
    rows = evaluate(runs, {m: perf for m in MODELS.values()} if perf else None, args.jobs, args.arrival)
    stats = score(rows)
    if args.json:
        print(json.dumps(stats))
    else:
        print_table(rows)
        print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
