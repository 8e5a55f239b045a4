"""The metric names a search may optimise or constrain, checked before any trial runs.

A sweep's runs table holds the summary flattened with ``'__'``
(``servesim.sweep.store.flatten_summary``: ``ttft_s__p99``,
``slo__goodput_rps``), the axis columns (``axis__cluster__num_replicas``)
and the deployment metrics ``cost_usd_per_hr`` and ``num_gpus``.  Which
nested keys a summary has depends on the scenario (energy, fleet, pools and
cache sections appear only when switched on), so ``check_metric_names``
checks what is fixed: the top-level summary key, and the statistic of a
latency distribution.  A misspelt name is refused with a suggestion instead
of being found only after the first batch of trials has run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from servesim.errors import ConfigError

__all__ = ["DEPLOYMENT_METRICS", "RUN_COLUMNS", "STATS_KEYS", "SUMMARY_KEYS", "check_metric_names"]

#: Metrics a search computes from the deployment, not from a run.
DEPLOYMENT_METRICS = ("cost_usd_per_hr", "num_gpus")
#: Columns of the runs table that are not summary metrics.
RUN_COLUMNS = ("wall_s", "finished_at")
#: Keys of a ``stats.describe`` distribution.
STATS_KEYS = ("count", "mean", "p50", "p90", "p99", "max")
#: Summary keys that hold a ``stats.describe`` distribution.
DISTRIBUTIONS = ("ttft_s", "tpot_s", "e2e_s", "queue_delay_s", "max_itl_s")
#: Every top-level key a run's summary can have (metrics/summary.py, api.py and the feature sections).
SUMMARY_KEYS = DISTRIBUTIONS + (
    "availability", "chunk_cache", "cost", "cost_per_million_tokens_usd", "cost_usd", "energy_j",
    "energy_per_token_j", "expert_offload", "failed_by_reason", "fleet", "gpus_per_replica", "horizon_s",
    "idle_cost_usd", "input_tokens_per_s", "kv_cache", "kv_pinning", "lora", "mean_quality",
    "mean_running_batch", "model_cost_per_request_usd", "model_cost_usd", "num_failed", "num_finished",
    "num_gpus", "num_in_flight", "num_preemptions", "num_rejected", "num_replicas", "num_requests",
    "num_steps", "output_tokens_per_s", "peak_kv_usage", "peak_queue_len", "pools", "power_budget",
    "power_w", "prefix_cache_hit_rate", "prefix_cached_tokens", "prefix_hit_rate", "programs",
    "rejected_by_reason", "requests_per_s", "role_switches", "semantic_cache", "semi_pd", "sim_time_s",
    "simulated_requests_per_wall_s", "slo", "span_s", "utilization", "wall_time_s", "workload_skipped",
)


def check_metric_names(objectives: Iterable[str], constraints: Iterable[str]) -> None:
    """Raise ``ConfigError`` naming the first objective or constraint metric no run can have.

    ``objectives.0.metric = 'ttft_s__p999': ...`` — the field, the name, the nearest known names.
    """
    for where, names in (("objectives", objectives), ("constraints", constraints)):
        for i, name in enumerate(names):
            problem = _problem(name)
            if problem is not None:
                raise ConfigError(f"{where}.{i}.metric = {name!r}: {problem}")


def _problem(name: str) -> str | None:
    if name in DEPLOYMENT_METRICS or name in RUN_COLUMNS or name.startswith("axis__"):
        return None
    top, _, rest = name.partition("__")
    if top not in SUMMARY_KEYS:
        close = difflib.get_close_matches(name, _examples(), n=3) or difflib.get_close_matches(top, SUMMARY_KEYS, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return (f"not a metric of the run's summary; {hint}(summary keys joined by '__', e.g. ttft_s__p99, "
                "slo__goodput_rps; or cost_usd_per_hr, num_gpus)")
    if top in DISTRIBUTIONS and rest not in STATS_KEYS:
        close = difflib.get_close_matches(rest, STATS_KEYS, n=1)
        hint = f"did you mean {top}__{close[0]}? " if close else ""
        return f"{top} is a distribution: {hint}(one of {', '.join(f'{top}__{k}' for k in STATS_KEYS)})"
    return None


def _examples() -> list[str]:
    """Full names to suggest: the distributions' statistics and the top-level keys."""
    return [f"{d}__{k}" for d in DISTRIBUTIONS for k in STATS_KEYS] + list(SUMMARY_KEYS) + list(DEPLOYMENT_METRICS)
