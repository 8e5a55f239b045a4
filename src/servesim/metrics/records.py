"""What a finished run hands to the metrics layer: per-request rows, sampled
per-replica state, and run-wide facts.

All three are plain column-wise containers.  They hold no logic beyond the
derived per-request latencies, which are defined here once so the summary,
the parquet writer and any later analysis agree on them.

Units: every ``*_s`` column is seconds of *simulated* time measured from the
start of the run, except ``RunInfo.wall_time_s`` (host wall-clock seconds).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, fields

import numpy as np

#: ``RequestTable.status`` codes.
FINISHED = 0
REJECTED = 1
IN_FLIGHT = 2
FAILED = 3  # admitted, then lost to a replica failure (fleet operations), with a reason

STATUS_NAMES = {FINISHED: "finished", REJECTED: "rejected", IN_FLIGHT: "in_flight", FAILED: "failed"}

# Column name -> dtype, in the order they are stored and written.
_REQUEST_DTYPES: dict[str, type | np.dtype] = {
    "request_id": np.int64,
    "arrival_s": np.float64,
    "prompt_tokens": np.int64,
    "output_tokens": np.int64,
    "tokens_generated": np.int64,
    "replica": np.int64,
    "status": np.int8,
    "reject_reason": object,
    "first_scheduled_s": np.float64,
    "first_token_s": np.float64,
    "finish_s": np.float64,
    "max_itl_s": np.float64,
    "num_preemptions": np.int64,
    "cached_tokens": np.int64,
}

_TIMESERIES_DTYPES: dict[str, type] = {
    "time_s": np.float64,
    "replica": np.int64,
    "queue_len": np.int64,
    "running": np.int64,
    "kv_used_blocks": np.int64,
    "kv_total_blocks": np.int64,
}


def _coerce_columns(obj: object, dtypes: dict[str, type | np.dtype]) -> None:
    """Cast every column of a frozen dataclass to its dtype and check lengths.

    Casting here (rather than trusting the caller) lets tests and the
    simulator pass plain lists; ``np.asarray`` does not copy arrays that
    already have the right dtype, so this is free on the hot path.
    """
    length: int | None = None
    for name, dtype in dtypes.items():
        col = np.asarray(getattr(obj, name), dtype=dtype)
        if col.ndim != 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be 1-D, got shape {col.shape}")
        if length is None:
            length = col.shape[0]
        elif col.shape[0] != length:
            raise ValueError(
                f"{type(obj).__name__}.{name} has {col.shape[0]} rows, expected {length}"
            )
        object.__setattr__(obj, name, col)


@dataclass(frozen=True)
class RequestTable:
    """One row per request of the workload, in workload order (length ``n``).

    Columns (numpy arrays, cast to these dtypes on construction):

    request_id: int64, 0..n-1.
    arrival_s: float64, arrival time (s).
    prompt_tokens: int64, prompt length (tokens).
    output_tokens: int64, tokens the request asked for.
    tokens_generated: int64, output tokens actually produced by the end.
    replica: int64, replica the request was routed to; -1 if never routed.
    status: int8, one of ``FINISHED`` (0), ``REJECTED`` (1), ``IN_FLIGHT`` (2,
        still queued or running when the run stopped at its horizon), ``FAILED``
        (3, lost to a replica failure; see docs/operations.md).
    reject_reason: object array of str, '' unless rejected or failed (then why).
    first_scheduled_s: float64, first time the request entered a running
        batch (s); NaN if never scheduled.
    first_token_s: float64, time its first output token was produced (s);
        NaN if none was.
    finish_s: float64, time its last token was produced (s); NaN unless
        finished.
    max_itl_s: float64, largest gap between consecutive output tokens (s);
        NaN when fewer than 2 tokens were produced.
    num_preemptions: int64, times the request was preempted.
    cached_tokens: int64, prompt tokens its replica's prefix cache held on
        arrival (their prefill is skipped); 0 without prefix caching.

    Derived latencies are methods (seconds, NaN where undefined); they
    allocate a new array on each call.
    """

    request_id: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    tokens_generated: np.ndarray
    replica: np.ndarray
    status: np.ndarray
    reject_reason: np.ndarray
    first_scheduled_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    max_itl_s: np.ndarray
    num_preemptions: np.ndarray
    cached_tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cached_tokens is None:  # tables built before prefix caching existed
            object.__setattr__(self, "cached_tokens", np.zeros(len(self.request_id), dtype=np.int64))
        _coerce_columns(self, _REQUEST_DTYPES)

    def __len__(self) -> int:
        return int(self.request_id.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The stored columns by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def ttft_s(self) -> np.ndarray:
        """Time to first token (s): ``first_token_s - arrival_s``; NaN if no token."""
        return self.first_token_s - self.arrival_s

    def e2e_s(self) -> np.ndarray:
        """End-to-end latency (s): ``finish_s - arrival_s``; NaN unless finished."""
        return self.finish_s - self.arrival_s

    def queue_delay_s(self) -> np.ndarray:
        """Queueing delay (s): ``first_scheduled_s - arrival_s``; NaN if never scheduled."""
        return self.first_scheduled_s - self.arrival_s

    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first (s/token).

        ``(finish_s - first_token_s) / (tokens_generated - 1)`` for finished
        requests with at least 2 tokens; NaN for every other row (a single
        token has no per-token decode time, and unfinished rows have no
        finish time).
        """
        out = np.full(len(self), np.nan)
        ok = (self.status == FINISHED) & (self.tokens_generated >= 2)
        out[ok] = (self.finish_s[ok] - self.first_token_s[ok]) / (self.tokens_generated[ok] - 1)
        return out

    def derived_columns(self) -> dict[str, np.ndarray]:
        """``ttft_s``, ``tpot_s``, ``e2e_s``, ``queue_delay_s`` by name."""
        return {
            "ttft_s": self.ttft_s(),
            "tpot_s": self.tpot_s(),
            "e2e_s": self.e2e_s(),
            "queue_delay_s": self.queue_delay_s(),
        }


@dataclass(frozen=True)
class TimeSeries:
    """Per-replica state samples, one row per sample (any order the simulator
    recorded them; normally by time).

    time_s: float64, simulated time of the sample (s).
    replica: int64, replica index.
    queue_len: int64, requests waiting (not in the running batch).
    running: int64, sequences in the running batch.
    kv_used_blocks / kv_total_blocks: int64, KV-cache blocks in use / in all.
    """

    time_s: np.ndarray
    replica: np.ndarray
    queue_len: np.ndarray
    running: np.ndarray
    kv_used_blocks: np.ndarray
    kv_total_blocks: np.ndarray

    def __post_init__(self) -> None:
        _coerce_columns(self, _TIMESERIES_DTYPES)

    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class TimeSeriesBuilder:
    """Accumulates ``TimeSeries`` rows during a run.

    ``append`` is called from the simulator's inner loop, so it only pushes
    onto typed ``array`` buffers (no numpy, no validation); ``build`` copies
    them into numpy columns once at the end.
    """

    __slots__ = ("_time", "_replica", "_queue", "_running", "_kv_used", "_kv_total")

    def __init__(self) -> None:
        self._time = array("d")
        self._replica = array("q")
        self._queue = array("q")
        self._running = array("q")
        self._kv_used = array("q")
        self._kv_total = array("q")

    def __len__(self) -> int:
        return len(self._time)

    def append(
        self,
        time_s: float,
        replica: int,
        queue_len: int,
        running: int,
        kv_used_blocks: int,
        kv_total_blocks: int,
    ) -> None:
        """Record one sample (units as in ``TimeSeries``)."""
        self._time.append(time_s)
        self._replica.append(replica)
        self._queue.append(queue_len)
        self._running.append(running)
        self._kv_used.append(kv_used_blocks)
        self._kv_total.append(kv_total_blocks)

    def build(self) -> TimeSeries:
        """A ``TimeSeries`` holding copies of every sample appended so far."""
        return TimeSeries(
            time_s=np.array(self._time, dtype=np.float64),
            replica=np.array(self._replica, dtype=np.int64),
            queue_len=np.array(self._queue, dtype=np.int64),
            running=np.array(self._running, dtype=np.int64),
            kv_used_blocks=np.array(self._kv_used, dtype=np.int64),
            kv_total_blocks=np.array(self._kv_total, dtype=np.int64),
        )


@dataclass(frozen=True)
class RunInfo:
    """Run-wide facts the per-request rows do not carry.

    sim_time_s: simulated clock when the run stopped (s).
    horizon_s: the configured stop time (s), or None when the run drained.
    wall_time_s: host wall-clock seconds the run took (varies run to run).
    num_replicas: replicas in the fleet.
    gpus_per_replica: GPUs each replica occupies (0: they differ, a mixed fleet).
    busy_time_s: float64 array, one entry per replica: simulated seconds
        the replica spent executing steps.
    num_steps: model steps executed across all replicas.
    price_usd_per_gpu_hr: GPU price (USD per GPU-hour), or None if unknown.
    workload_skipped: trace rows dropped while loading, by reason.
    num_role_switches: replicas the P/D controller moved between pools.
    num_gpus, usd_per_hr: the fleet's GPUs and its price per hour, for a
        fleet of mixed pools (None: ``num_replicas x gpus_per_replica`` GPUs
        at ``price_usd_per_gpu_hr``).
    gpu_seconds: GPU-seconds provisioned, when replicas come and go (fleet
        operations; None: every GPU over the whole span).
    """

    sim_time_s: float
    horizon_s: float | None
    wall_time_s: float
    num_replicas: int
    gpus_per_replica: int
    busy_time_s: np.ndarray
    num_steps: int
    price_usd_per_gpu_hr: float | None = None
    workload_skipped: dict[str, int] = field(default_factory=dict)
    num_role_switches: int = 0
    num_gpus: int | None = None
    usd_per_hr: float | None = None
    gpu_seconds: float | None = None

    def __post_init__(self) -> None:
        busy = np.asarray(self.busy_time_s, dtype=np.float64)
        if busy.shape != (self.num_replicas,):
            raise ValueError(
                f"RunInfo.busy_time_s has shape {busy.shape}, expected ({self.num_replicas},)"
            )
        object.__setattr__(self, "busy_time_s", busy)
