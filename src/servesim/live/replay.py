"""``servesim replay``: a scenario's workload sent to a live OpenAI-compatible endpoint.

The workload is the simulator's own (``build_workload`` with the scenario's seed), so a replay
and ``servesim run`` of one scenario send the same requests: same arrival times, prompt and
output lengths, request ids (the workload's rows).

Sending
    Open loop: request ``r`` is due at ``arrival_s[r] / time_scale`` wall-clock seconds after
    the replay's start.  Closed loop (``workload.kind: closed_loop``): each client's first
    request is due at its arrival; each next one ``think_s / time_scale`` after the previous one
    ended (its stream closed, finished or not).  Agent programs are refused.  With
    ``horizon_s`` set, requests due after it (in scenario time) are not sent; the ones sent run
    to their end.  At most ``max_concurrency`` requests are open at once (one more waits, and
    its wait shows as send lag); each gets ``timeout_s`` from its send to its last byte and one
    TCP connection of its own (no keep-alive: no request can land on a closing connection).

One request
    ``POST /v1/completions`` with ``stream``, ``stream_options.include_usage``, ``max_tokens`` =
    its output length, ``ignore_eos``, ``temperature`` 0 and, unless turned off,
    ``return_token_ids``; the prompt from ``servesim.live.prompts``.  Output tokens are counted
    per chunk (``servesim.live.sse``): from ``token_ids`` when the server sends them (then the
    usage block must agree), else one per chunk with text (then the usage block's count, when
    sent, is the one kept).  A request FINISHED when exactly its output length came back; else
    it FAILED with its reason (``reject_reason``): ``timeout``, ``http 503: <message>``,
    ``connection: <error>``, ``stream error: <message>``, ``bad chunk: <error>``,
    ``usage mismatch: ...``, ``short: 12 of 64 tokens`` or ``long: ...``.  No request is dropped.
    A connection never made is tried again (``CONNECT_TRIES`` in all; the server saw nothing).

Times (every ``*_s`` column): wall-clock seconds from the replay's start, not scenario
seconds; ``arrival_s`` is when the request was due, ``sent_s`` when it was handed to the HTTP
client (``sent_s - arrival_s`` is the client's send lag), ``first_token_s``, ``finish_s`` and
each token's time when its chunk was read.

The summary is the simulator's (``summarize``, energy keys None), with what a replay cannot
know left None (replicas, GPUs, GPU-hours) and a ``replay`` section (``replay_section``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from servesim.config import ScenarioConfig
from servesim.core.rng import RandomStreams
from servesim.errors import ConfigError
from servesim.live.cpu_share import CpuRecorder, sample
from servesim.live.endpoint import CONNECT_TRIES, fetch_metrics, list_models
from servesim.live.prompts import PromptMaker
from servesim.live.sse import Chunk, SseDecoder, error_message, read_chunk
from servesim.metrics.energy import energy_summary
from servesim.metrics.records import FAILED, FINISHED, RequestTable, RunInfo, TimeSeries
from servesim.metrics.stats import describe
from servesim.metrics.summary import summarize
from servesim.workload.builder import build_workload
from servesim.workload.config import AgentWorkloadConfig, ClosedLoopWorkloadConfig
from servesim.workload.request import Workload

PROMPT_MODES = ("tokens", "text")  # as servesim probe names them


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: where to, how fast, how many at once (see the module docstring).

    endpoint: the server's base URL (``http://host:port``; a trailing ``/v1`` is accepted).
    model: the API model name; None: the first one ``/v1/models`` lists.
    time_scale: scenario seconds per wall-clock second (2: twice as fast).
    prompt: ``tokens`` (token ids) or ``text``.
    max_concurrency: requests open at once, at most.
    timeout_s: seconds from a request's send to its stream's end before it fails as ``timeout``.
    token_ids: ask for ``return_token_ids`` (vLLM); off for servers that refuse unknown fields.
    server_pid: the server's process id, to measure its CPU apart from other processes'.
    cpu_period_s: seconds between the noise meter's samples.
    """

    endpoint: str
    model: str | None = None
    time_scale: float = 1.0
    prompt: str = "tokens"
    max_concurrency: int = 512
    timeout_s: float = 300.0
    token_ids: bool = True
    server_pid: int | None = None
    cpu_period_s: float = 1.0

    def __post_init__(self) -> None:
        try:
            url = httpx.URL(self.endpoint)
        except (httpx.InvalidURL, ValueError, TypeError) as err:
            raise ConfigError(f"option --endpoint {self.endpoint}: not a URL ({err})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"option --endpoint {self.endpoint}: not an http:// or https:// URL")
        checks = ((self.time_scale > 0 and math.isfinite(self.time_scale), "--time-scale", self.time_scale, "> 0"),
                  (self.max_concurrency >= 1, "--max-concurrency", self.max_concurrency, ">= 1"),
                  (self.timeout_s > 0, "--timeout", self.timeout_s, "> 0"),
                  (self.prompt in PROMPT_MODES, "--prompt", self.prompt, "tokens or text"))
        for ok, option, value, allowed in checks:
            if not ok:
                raise ConfigError(f"option {option} {value}: must be {allowed}")

    @property
    def base_url(self) -> str:
        """The endpoint without a trailing ``/`` or ``/v1``."""
        url = self.endpoint.rstrip("/")
        return url[:-3] if url.endswith("/v1") else url


@dataclass(frozen=True)
class ReplayResult:
    """What a replay recorded: the request table (the simulator's columns) and the send times,
    every token's time, the summary, and the endpoint's ``/metrics`` text before and after."""

    config: ScenarioConfig
    summary: dict[str, Any]
    requests: RequestTable
    sent_s: np.ndarray
    token_times: dict[str, np.ndarray]
    programs: dict[str, np.ndarray] | None = None
    metrics_before: str | None = None
    metrics_after: str | None = None

    def config_text(self) -> str:
        from servesim.report.files import config_yaml

        return config_yaml(self.config.to_dict())

    def write_files(self, out_dir: Path) -> dict[str, Path]:
        """Write requests.parquet, token_times.parquet, config.yaml, summary.json, the endpoint's
        metrics_before.txt and metrics_after.txt (when it had them) and, for closed-loop clients,
        programs.parquet into the existing folder ``out_dir``; returns their paths by stem."""
        import pyarrow as pa

        from servesim.report.files import requests_arrow, summary_json, write_parquet

        paths = {stem: out_dir / name for stem, name in (("requests", "requests.parquet"),
                                                         ("token_times", "token_times.parquet"),
                                                         ("config", "config.yaml"), ("summary", "summary.json"))}
        write_parquet(paths["requests"], requests_arrow(self.requests).append_column("sent_s", pa.array(self.sent_s)))
        write_parquet(paths["token_times"], pa.table(self.token_times))
        paths["config"].write_text(self.config_text(), encoding="utf-8")
        paths["summary"].write_text(summary_json(self.summary), encoding="utf-8")
        if self.programs is not None:
            paths["programs"] = out_dir / "programs.parquet"
            write_parquet(paths["programs"], pa.table(self.programs))
        for stem, text in (("metrics_before", self.metrics_before), ("metrics_after", self.metrics_after)):
            if text is not None:
                paths[stem] = out_dir / f"{stem}.txt"
                paths[stem].write_text(text, encoding="utf-8")
        return paths


def check_replayable(config: ScenarioConfig) -> None:
    """``ConfigError`` for a workload a replay cannot send (agent programs)."""
    if isinstance(config.workload, AgentWorkloadConfig):
        raise ConfigError("workload.kind agent: replay does not support agent programs (calls waiting on tools and "
                          "earlier calls); replay a trace, synthetic, shared_prefix or closed_loop workload")


def replay(config: ScenarioConfig, options: ReplayOptions, on_start: Any = None) -> ReplayResult:
    """Replay ``config``'s workload against ``options.endpoint`` (see the module docstring).

    ``on_start(num_requests, model)`` is called once the model is known, before the first send.
    ``ConfigError`` for a workload that cannot be replayed or a model that cannot be found;
    requests that fail are recorded, never raised.
    """
    check_replayable(config)
    if options.server_pid is not None:
        from servesim.live.cpu_share import check_pid

        check_pid(options.server_pid)
    workload = build_workload(config.workload, RandomStreams(config.seed))
    return asyncio.run(replay_async(config, workload, options, on_start))


async def replay_async(config: ScenarioConfig, workload: Workload, options: ReplayOptions,
                       on_start: Any = None) -> ReplayResult:
    """``replay`` inside a running event loop, of a workload already built."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)  # a new connection per request
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(options.timeout_s), trust_env=False) as client:
        model = options.model or await first_model(client, options.base_url)
        plan = _Plan.of(workload, config.horizon_s, options.time_scale)
        if on_start is not None:
            on_start(plan.num_due, model)
        sender = _Sender(client, options, model, workload, PromptMaker(workload, config.seed), plan)
        before = await fetch_metrics(client, options.base_url)
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        cpu = await sender.run()
        after = await fetch_metrics(client, options.base_url)
    return _result(config, workload, options, sender, _Session(model, started_at, cpu, before, after))


@dataclass(frozen=True)
class _Session:
    """What a replay observed besides its requests."""

    model: str
    started_at: str  # UTC, ISO 8601
    cpu: dict[str, Any]  # CpuRecorder.summary()
    metrics_before: str | None
    metrics_after: str | None


def _result(config: ScenarioConfig, workload: Workload, options: ReplayOptions, sender: "_Sender",
            session: _Session) -> ReplayResult:
    table, sent, tokens = sender.tables()
    closed = isinstance(config.workload, ClosedLoopWorkloadConfig)
    programs = None
    if closed:
        from servesim.metrics.programs import program_table

        programs = program_table(table, workload)
    summary = replay_summary(config, workload, table, sender.end_s, options.time_scale, programs)
    records = [sender.records[r] for r in table.request_id]
    summary["replay"] = replay_section(options, session, closed, table, sent, records)
    return ReplayResult(config, summary, table, sent, tokens, programs, session.metrics_before, session.metrics_after)


async def first_model(client: Any, base_url: str) -> str:
    """The first model ``GET /v1/models`` lists; ``ConfigError`` if there is none or no answer."""
    return (await list_models(client, base_url))[0].name


def replay_summary(config: ScenarioConfig, workload: Workload, table: RequestTable, end_s: float, time_scale: float,
                   programs: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The simulator's summary of the replay's table: the replay's clock (wall seconds) for the
    simulated one, the horizon in wall seconds, no replicas, steps or samples, and what a replay
    cannot know (replicas, GPUs, GPU-hours, energy, simulation speed) None."""
    from servesim.metrics.programs import program_summary

    info = RunInfo(sim_time_s=end_s, horizon_s=None if config.horizon_s is None else config.horizon_s / time_scale,
                   wall_time_s=end_s, num_replicas=0, gpus_per_replica=0, busy_time_s=np.zeros(0), num_steps=0,
                   workload_skipped=dict(workload.skipped))
    summary = summarize(table, _NO_SAMPLES, info, config.slo)
    summary.update(energy_summary([], [], [], [], None, 0, 0, None))
    if programs is not None:
        summary.update(program_summary(programs))
    summary.update(num_replicas=None, num_gpus=None, simulated_requests_per_wall_s=None)
    summary["cost"]["gpu_hours"] = None
    return summary


def replay_section(options: ReplayOptions, session: _Session, closed: bool, table: RequestTable, sent: np.ndarray,
                   records: list["_Record"]) -> dict[str, Any]:
    """The summary's ``replay`` section (``records``: the table's rows)::

        endpoint, model, time_scale, started_at (UTC, ISO 8601), prompt ('tokens' | 'text'),
        max_concurrency, timeout_s, closed_loop: bool, num_sent: int,
        send_lag_s: Stats of sent_s - arrival_s (s, all requests),
        tokens_counted_from: {token_ids, text_chunks, usage}: requests by how their output tokens
            were counted (requests that got no chunk and no usage block in none),
        usage_prompt_mismatches: requests whose usage.prompt_tokens differ from the prompt's length
            (None: no usage block reported one),
        cached_tokens: prompt tokens the server reported cached (usage.prompt_tokens_details),
        cpu: the noise meter (servesim.live.cpu_share.CpuRecorder.summary),
        metrics_files: the endpoint's /metrics texts written (metrics_before.txt, metrics_after.txt)
    """
    reported = [r for r in records if r.usage_prompt is not None]
    return {
        "endpoint": options.endpoint, "model": session.model, "time_scale": options.time_scale,
        "started_at": session.started_at, "prompt": options.prompt, "max_concurrency": options.max_concurrency,
        "timeout_s": options.timeout_s, "closed_loop": closed, "num_sent": int(np.isfinite(sent).sum()),
        "send_lag_s": describe(sent - table.arrival_s),
        "tokens_counted_from": {k: sum(1 for r in records if r.counted_from == k)
                                for k in ("token_ids", "text_chunks", "usage")},
        "usage_prompt_mismatches": (sum(1 for r in reported if r.usage_prompt != r.prompt_tokens)
                                    if reported else None),
        "cached_tokens": int(table.cached_tokens.sum()),
        "cpu": session.cpu,
        "metrics_files": [name for name, text in (("metrics_before.txt", session.metrics_before),
                                                  ("metrics_after.txt", session.metrics_after)) if text is not None],
    }


_NO_SAMPLES = TimeSeries([], [], [], [], [], [])


# ---------------------------------------------------------------- the plan: which rows, when
@dataclass(frozen=True)
class _Plan:
    """Rows to send: ``roots`` (due at their arrival) in arrival order; ``next_row[r]`` the row that
    follows ``r`` on its client (-1: none); ``think_s`` before a follower; times in wall seconds."""

    roots: np.ndarray
    due_s: np.ndarray
    next_row: np.ndarray
    think_s: np.ndarray
    horizon_s: float  # wall seconds; inf without one
    num_due: int

    @classmethod
    def of(cls, workload: Workload, horizon_s: float | None, time_scale: float) -> "_Plan":
        n = len(workload)
        horizon = math.inf if horizon_s is None else horizon_s / time_scale
        due = workload.arrival_s / time_scale
        next_row = np.full(n, -1, np.int64)
        think = np.zeros(n)
        if workload.follows is None:
            roots = np.flatnonzero(due <= horizon)
        else:
            follows = np.asarray(workload.follows, np.int64)
            followers = np.flatnonzero(follows >= 0)
            next_row[follows[followers]] = followers
            think = np.asarray(workload.think_s, np.float64) / time_scale
            roots = np.flatnonzero((follows < 0) & (due <= horizon))
            roots = roots[np.argsort(due[roots], kind="stable")]
        num_due = len(roots) if workload.follows is None else n  # a closed loop: at most every row
        return cls(roots, due, next_row, think, horizon, num_due)


# ---------------------------------------------------------------- one request's record
@dataclass
class _Record:
    """What happened to one request (times in wall seconds from the start)."""

    prompt_tokens: int
    output_tokens: int
    arrival_s: float = math.nan
    sent_s: float = math.nan
    token_times: list[float] = field(default_factory=list)
    reason: str | None = None  # why it failed; None while it has not
    finished: bool = False
    tokens: int = 0
    from_ids: bool = False
    counted_from: str | None = None
    usage: dict[str, Any] | None = None  # the last usage block
    usage_prompt: int | None = None
    usage_completion: int | None = None
    cached: int = 0
    stream_error: str | None = None

    def add(self, chunk: Chunk, now: float) -> None:
        self.token_times.extend([now] * chunk.num_tokens)
        self.from_ids = self.from_ids or chunk.from_token_ids
        if chunk.usage is not None:
            self.usage = chunk.usage

    def settle(self) -> None:
        """Count the tokens and decide the outcome once the stream ended (module docstring)."""
        self._read_usage()
        counted = len(self.token_times)
        if self.from_ids or self.usage_completion is None:
            self.tokens = counted
            self.counted_from = "token_ids" if self.from_ids else "text_chunks" if counted else None
        else:  # text chunks may coalesce tokens (or hold none): the server's count is the one kept
            self.tokens, self.counted_from = self.usage_completion, "usage"
        if self.reason is None:
            self.reason = self._failure()
        self.finished = self.reason is None

    def _failure(self) -> str | None:
        counted, reported = len(self.token_times), self.usage_completion
        if self.stream_error is not None:
            return f"stream error: {self.stream_error}"
        if self.from_ids and reported is not None and reported != counted:
            return f"usage mismatch: {counted} tokens streamed, usage says {reported}"
        if self.tokens != self.output_tokens:
            word = "short" if self.tokens < self.output_tokens else "long"
            return f"{word}: {self.tokens} of {self.output_tokens} tokens"
        return None

    def _read_usage(self) -> None:
        usage = self.usage or {}
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        self.usage_prompt = _int_or_none(usage.get("prompt_tokens"))
        self.usage_completion = _int_or_none(usage.get("completion_tokens"))
        self.cached = _int_or_none(cached) or 0


def _int_or_none(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


# ---------------------------------------------------------------- the sender
class _Sender:
    """Sends the plan's requests on time and fills one ``_Record`` per row."""

    def __init__(self, client: Any, options: ReplayOptions, model: str, workload: Workload, prompts: PromptMaker,
                 plan: _Plan) -> None:
        self.client, self.options, self.model, self.prompts, self.plan = client, options, model, prompts, plan
        self.url = f"{options.base_url}/v1/completions"
        self.records = [_Record(int(p), int(o)) for p, o in zip(workload.prompt_tokens, workload.output_tokens)]
        self.start = 0.0
        self.end_s = 0.0
        self._slots = asyncio.Semaphore(options.max_concurrency)

    def clock(self) -> float:
        return time.perf_counter() - self.start

    async def run(self) -> dict[str, Any]:
        """Send every request, each client's chain in turn; the noise meter's summary."""
        cpu = CpuRecorder(self.options.server_pid, self.options.cpu_period_s)
        cpu.record()
        self.start = time.perf_counter()
        meter = asyncio.create_task(self._meter(cpu))
        chains = []
        try:
            for row in self.plan.roots:
                await self._sleep_until(self.plan.due_s[row])
                chains.append(asyncio.create_task(self._chain(int(row))))
            await asyncio.gather(*chains)
        finally:
            meter.cancel()
            for task in chains:
                task.cancel()
        self.end_s = self.clock()
        cpu.record()
        return cpu.summary()

    async def _meter(self, cpu: CpuRecorder) -> None:
        while True:
            await asyncio.sleep(cpu.period_s)
            cpu.samples.append(await asyncio.to_thread(sample, cpu.server_pid))

    async def _chain(self, row: int) -> None:
        """Send ``row`` when due, then each row following it on its client."""
        due = float(self.plan.due_s[row])
        while True:
            await self._send(row, due)
            row = int(self.plan.next_row[row])
            if row < 0:
                return
            due = self.clock() + float(self.plan.think_s[row])  # the previous one's end, plus think time
            if due > self.plan.horizon_s:
                return
            await self._sleep_until(due)

    async def _send(self, row: int, due: float) -> None:
        rec = self.records[row]
        rec.arrival_s = due
        async with self._slots:
            body = self._body(row)  # built once a slot is free: requests waiting for one hold no prompt
            rec.sent_s = self.clock()
            try:
                async with asyncio.timeout(self.options.timeout_s):
                    for attempt in range(1, CONNECT_TRIES + 1):
                        try:
                            await self._stream(body, rec)
                            break
                        except (httpx.ConnectError, httpx.ConnectTimeout):
                            if attempt == CONNECT_TRIES:
                                raise
                            rec.sent_s = self.clock()  # it reached no server: send it again
            except (TimeoutError, httpx.TimeoutException):
                rec.reason = "timeout"
            except (httpx.HTTPError, OSError) as err:
                rec.reason = f"connection: {_one_line(err)}"
        rec.settle()

    async def _stream(self, body: bytes, rec: _Record) -> None:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        async with self.client.stream("POST", self.url, content=body, headers=headers) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", errors="replace")
                rec.reason = f"http {response.status_code}: {error_message(text)}"
                return
            decoder = SseDecoder()
            async for line in response.aiter_lines():
                data = decoder.line(line)
                if data is not None and self._take(data, rec):
                    return
            data = decoder.flush()
            if data is not None:
                self._take(data, rec)

    def _take(self, data: str, rec: _Record) -> bool:
        """Book one event; True when the stream is over ([DONE], an error, a bad chunk)."""
        now = self.clock()
        try:
            chunk = read_chunk(data)
        except ValueError as err:
            rec.reason = f"bad chunk: {_one_line(err)}"
            return True
        if chunk.error is not None:
            rec.stream_error = chunk.error
            return True
        rec.add(chunk, now)
        return chunk.done

    def _body(self, row: int) -> bytes:
        rec = self.records[row]
        prompt: Any = self.prompts.token_ids(row) if self.options.prompt == "tokens" else self.prompts.text(row)
        body = {"model": self.model, "prompt": prompt, "max_tokens": rec.output_tokens, "stream": True,
                "stream_options": {"include_usage": True}, "ignore_eos": True, "temperature": 0}
        if self.options.token_ids:
            body["return_token_ids"] = True
        return json.dumps(body, separators=(",", ":")).encode()

    async def _sleep_until(self, due: float) -> None:
        delay = due - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def tables(self) -> tuple[RequestTable, np.ndarray, dict[str, np.ndarray]]:
        """The request table of the rows that were due (in request-id order), their send times,
        and every token's time (``token_times.parquet``'s columns)."""
        rows = [r for r, rec in enumerate(self.records) if not math.isnan(rec.arrival_s)]
        recs = [self.records[r] for r in rows]
        counts = [len(rec.token_times) for rec in recs]
        tokens = {
            "request_id": np.repeat(np.asarray(rows, np.int64), counts),
            "token_index": np.concatenate([np.arange(c, dtype=np.int64) for c in counts] or [np.zeros(0, np.int64)]),
            "time_s": np.asarray([t for rec in recs for t in rec.token_times], np.float64),
        }
        return _request_table(rows, recs), np.asarray([rec.sent_s for rec in recs], np.float64), tokens


def _request_table(rows: list[int], recs: list[_Record]) -> RequestTable:
    """The simulator's request table of the records: never routed (replica -1), never scheduled
    (first_scheduled_s NaN), never preempted; FINISHED or FAILED with its reason."""
    n = len(recs)
    return RequestTable(
        request_id=rows, arrival_s=[rec.arrival_s for rec in recs],
        prompt_tokens=[rec.prompt_tokens for rec in recs], output_tokens=[rec.output_tokens for rec in recs],
        tokens_generated=[rec.tokens for rec in recs], replica=[-1] * n,
        status=[FINISHED if rec.finished else FAILED for rec in recs],
        reject_reason=np.array([rec.reason or "" for rec in recs], dtype=object),
        first_scheduled_s=[math.nan] * n,
        first_token_s=[rec.token_times[0] if rec.token_times else math.nan for rec in recs],
        finish_s=[rec.token_times[-1] if rec.finished else math.nan for rec in recs],
        max_itl_s=[float(np.max(np.diff(rec.token_times))) if len(rec.token_times) > 1 else math.nan for rec in recs],
        num_preemptions=[0] * n, cached_tokens=[rec.cached for rec in recs],
    )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
