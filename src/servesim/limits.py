"""Pre-flight limits: refuse a run or a sweep too big for this machine, before building it.

A run's memory is estimated from its config alone (``check_config``, before anything is
built) and again once its workload is built (``check_workload``, when a trace's window,
sampling or ``max_requests`` decide the request count and span)::

    memory = replicas x BYTES_PER_REPLICA + requests x BYTES_PER_REQUEST
             + time-series samples x BYTES_PER_SAMPLE
    samples = span / engine.timeseries_interval_s x replicas

where span is ``horizon_s`` when set, else the last arrival (before the workload exists: a
synthetic workload's ``num_requests / rate_rps``).  The per-item costs are measured lower
bounds (a replica's KV block tables alone take 0.1-1 MB), so an estimate never exceeds
what the run would really take.

The limit is ``SERVESIM_MAX_MEMORY_GB`` (GiB) when set, else 70% of the machine's physical
memory.  The run's events are estimated too (at least ``EVENTS_PER_REQUEST`` per request) and
refused above ``SERVESIM_MAX_EVENTS`` (default 10**10, hours of wall time).  A sweep or search over more than ``SERVESIM_MAX_RUNS`` runs (default 100,000) is
refused too.  Each refusal is a ``ConfigError``: one line naming the field, the estimate,
the limit and how to raise it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from servesim.errors import ConfigError

MEMORY_ENV = "SERVESIM_MAX_MEMORY_GB"
EVENTS_ENV = "SERVESIM_MAX_EVENTS"
# A request is at least an arrival and a finish on the event loop; at ~1 us of work each, the
# default refuses runs that would take hours of wall time before they start.
EVENTS_PER_REQUEST = 2
SECONDS_PER_EVENT = 1e-6
DEFAULT_MAX_EVENTS = 1e10
RUNS_ENV = "SERVESIM_MAX_RUNS"
DEFAULT_MAX_RUNS = 100_000
DEFAULT_MEMORY_SHARE = 0.7  # of physical memory, when MEMORY_ENV is unset

BYTES_PER_REPLICA = 256 * 1024  # scheduler, KV block tables, buffers (measured 1 MB on an A100)
BYTES_PER_REQUEST = 200  # workload columns, request state and the per-request table
BYTES_PER_SAMPLE = 96  # six 8-byte columns, buffered then copied to numpy
_GIB = 2**30


def memory_limit_bytes() -> float:
    """``SERVESIM_MAX_MEMORY_GB`` GiB, else 70% of physical memory; ``ConfigError`` for a bad value."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ConfigError(f"{MEMORY_ENV}={text!r}: must be a positive number of GiB")
        return value * _GIB
    try:
        return DEFAULT_MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): no memory limit
        return float("inf")


def max_runs() -> int:
    """``SERVESIM_MAX_RUNS``, else 100,000; ``ConfigError`` for a bad value."""
    return int(_count_from_env(RUNS_ENV, DEFAULT_MAX_RUNS, "whole number of runs", int))


def _count_from_env(name: str, default: float, what: str, parse=float) -> float:
    """The positive finite number in environment variable ``name`` (``default`` when unset);
    ``ConfigError`` naming the variable and what it takes otherwise."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = parse(text)
    except ValueError:
        value = 0
    if not 1 <= value < float("inf"):
        raise ConfigError(f"{name}={text!r}: must be a positive {what}")
    return value


def check_config(config) -> None:
    """Refuse ``config`` (a ``ScenarioConfig``) if its estimated memory exceeds the limit; the
    request count and span are the config's own (synthetic and closed-loop workloads), else 0."""
    requests, span = _config_requests(config)
    # shared_prefix workloads have no num_requests: their stages (rate x duration) set the count.
    field = "workload.stages" if config.workload.kind == "shared_prefix" else "workload.num_requests"
    _check(config, f"{field} = {requests}" if field.endswith("requests") else f"{field} ({requests:,} requests)",
           requests, span)


def check_workload(config, workload) -> None:
    """Refuse ``config`` with its built ``workload`` if the estimated memory exceeds the limit."""
    n = len(workload)
    # Closed loops (agent programs, benchmark clients) leave their followers' arrivals at +inf
    # until their predecessors finish: the span known up front is that of the first arrivals.
    arrivals = workload.arrival_s[np.isfinite(workload.arrival_s)]
    span = float(arrivals.max()) if len(arrivals) else 0.0
    _check(config, f"workload ({n:,} requests)", n, span)


def check_runs(num_runs: int, axes: dict[str, int], what: str = "sweep") -> None:
    """Refuse a sweep of more than ``max_runs()`` runs, naming its axes (field -> values or samples)."""
    limit = max_runs()
    if num_runs > limit:
        shown = " x ".join(f"{name} ({count})" for name, count in axes.items())
        raise ConfigError(f"{what} spec expands to {num_runs:,} runs ({shown}), over the limit of {limit:,}; "
                          f"shrink its axes, split it, or raise the limit with {RUNS_ENV}=N")


def _check(config, requests_label: str, requests: int, span_s: float) -> None:
    replicas = config.cluster.num_replicas
    if config.horizon_s is not None:
        span_s = config.horizon_s if not span_s else min(span_s, config.horizon_s)
    samples = span_s / config.engine.timeseries_interval_s * replicas
    parts = [
        (f"cluster.num_replicas = {replicas}", replicas * BYTES_PER_REPLICA, f"{_size(BYTES_PER_REPLICA)} per replica"),
        (requests_label, requests * BYTES_PER_REQUEST, f"{BYTES_PER_REQUEST} B per request"),
        (f"engine.timeseries_interval_s = {config.engine.timeseries_interval_s!r}", samples * BYTES_PER_SAMPLE,
         f"{samples:.3g} time-series samples over {span_s:.6g} s x {replicas} replicas"),
    ]
    total = sum(p[1] for p in parts)
    limit = memory_limit_bytes()
    if total > limit:
        field, _, why = max(parts, key=lambda p: p[1])
        raise ConfigError(f"{field}: the run would need about {_size(total)} of memory ({why}), "
                          f"over the limit of {_size(limit)}; make the run smaller, or raise the limit with "
                          f"{MEMORY_ENV}=N (GiB; default 70% of physical memory)")
    events = EVENTS_PER_REQUEST * requests
    event_limit = max_events()
    if events > event_limit:
        raise ConfigError(f"{requests_label}: the run would process at least {events:.3g} events "
                          f"({EVENTS_PER_REQUEST} per request), over the limit of {event_limit:.3g} (about "
                          f"{event_limit * SECONDS_PER_EVENT / 3600:.0f} h of simulation); make the run smaller, or "
                          f"raise the limit with {EVENTS_ENV}=N")


def max_events() -> float:
    """``SERVESIM_MAX_EVENTS``, else 10**10; ``ConfigError`` for a bad value."""
    return _count_from_env(EVENTS_ENV, DEFAULT_MAX_EVENTS, "number of events")


def _config_requests(config) -> tuple[int, float]:
    """(requests, span in s) a workload config fixes before it is built; (0, 0) when only the
    built workload tells (traces, agents)."""
    workload: Any = config.workload
    kind = workload.kind
    if kind == "synthetic":
        return workload.num_requests, workload.num_requests / workload.arrival.rate_rps
    if kind == "closed_loop":
        return workload.num_requests, 0.0
    if kind == "shared_prefix":
        return int(sum(s.rate_rps * s.duration_s for s in workload.stages)), sum(s.duration_s for s in workload.stages)
    return 0, 0.0


def _size(num_bytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", _GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.3g} {unit}"
    return f"{num_bytes:.0f} B"
