"""One model replica: a batch scheduler driven by the event loop and priced by
the step-time model.

The replica is the only place where scheduling meets time.  It asks its
scheduler for a plan, asks the performance model how long the plan takes,
and schedules the iteration's end on the event loop.

Decode stretches.  Most iterations of a busy replica are pure decode steps
over an unchanged batch.  When the scheduler says a plan will repeat for
``k`` iterations (``decode_run``), the replica prices all ``k`` at
once (``decode_time_s`` per iteration) and schedules one event at the end of the
last.  An arrival in the middle cuts the stretch at the first iteration
boundary at or after the arrival, exactly where an iteration-by-iteration
run would have seen it.  Step ends are accumulated one add at a time, so the
clock readings equal those of the iteration-by-iteration mode
(``fast_path: false``) bit for bit.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Callable, Protocol

from servesim.cluster.events import STEP_DONE, WAKE
from servesim.core.events import EventLoop
from servesim.perf.batch_shape import BatchShape
from servesim.perf.steptime import StepTimeModel
from servesim.scheduler.batch_scheduler import BatchPlan, BatchScheduler, DecodeRun
from servesim.scheduler.sequence import Sequence

FinishedCallback = Callable[[list[Sequence], float], None]

# Longest decode stretch (iterations); longer runs continue as further stretches.
MAX_STRETCH_STEPS = 64
# Iterations priced ahead at a time, at least.  An arrival usually cuts a
# stretch after a few iterations, so pricing all of it up front would be
# wasted work: the stretch is priced up to the fleet's next arrival (or this
# many iterations, whichever is more), and its event fires at the end of
# each priced chunk to price the next (a checkpoint) until it is done.
PRICE_CHUNK = 8


class StepPricer(Protocol):
    """What the replica needs from a step-time model (``servesim.perf.steptime.StepTimeModel``)."""

    def time_s(self, shape: BatchShape) -> float:
        """Duration of one iteration of this shape (s)."""

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        """Duration of one pure-decode iteration (s); bit-equal to ``time_s`` of its shape."""


class _Stretch:
    """A run of pure-decode iterations in flight, priced a chunk at a time."""

    __slots__ = (
        "plan", "run", "start_s", "end_s", "num_steps", "token", "num_waiting", "_batch", "_kv_base", "_next_finish",
    )

    def __init__(self, plan: BatchPlan, run: DecodeRun, start_s: float, num_waiting: int) -> None:
        self.plan = plan
        self.run = run  # what each iteration runs and who finishes when
        self.start_s = start_s
        self.end_s: list[float] = []  # end time of each iteration priced so far (s)
        self.num_steps = run.max_steps  # iterations it will run unless cut
        self.token = -1  # event token of its next checkpoint or end
        self.num_waiting = num_waiting  # waiting queue length at its start (unchanged inside it)
        # Pricing cursor: batch and KV base of the next iteration to price.
        self._batch = run.batch0
        self._kv_base = run.kv0
        self._next_finish = 0

    def price(self, count: int, step_model: StepPricer, horizon: float, until_s: float = 0.0) -> None:
        """Price at least ``count`` more iterations, and on until one ends at or after ``until_s``
        (the next arrival, which may cut the stretch there), never past ``num_steps``.  Stop
        after the first ending beyond ``horizon`` and shorten the stretch to those ending by then."""
        ends = self.end_s
        run = self.run
        finish_steps, finish_kv = run.finish_steps, run.finish_kv
        j = len(ends)
        stop = min(self.num_steps, j + count)
        end = ends[-1] if ends else self.start_s
        batch, kv_base, nf = self._batch, self._kv_base, self._next_finish
        # The same call either way; compiled, the first is a direct C call.
        model = step_model if type(step_model) is StepTimeModel else None
        while j < stop or (end < until_s and j < self.num_steps):
            # Sequential adds, as an iteration-by-iteration run reads its clock.
            if model is not None:
                end = end + model.decode_time_s(batch, kv_base + batch * j)
            else:
                end = end + step_model.decode_time_s(batch, kv_base + batch * j)
            ends.append(end)
            while nf < len(finish_steps) and finish_steps[nf] == j:
                batch -= 1
                kv_base -= finish_kv[nf]
                nf += 1
            j += 1
            if end > horizon:
                # Iterations ending after the horizon never complete; keep the
                # first of them only when nothing else is left (in flight).
                self.num_steps = max(j - 1, 1)
                break
        self._batch, self._kv_base, self._next_finish = batch, kv_base, nf

    def event_time_s(self) -> float:
        """When its event fires: the end of the last iteration it runs, or of the priced chunk."""
        return self.end_s[min(self.num_steps, len(self.end_s)) - 1]


class Replica:
    """A serving replica (one model instance over ``tp * pp`` GPUs)."""

    def __init__(
        self,
        index: int,
        loop: EventLoop,
        scheduler: BatchScheduler,
        step_model: StepPricer,
        on_finished: FinishedCallback,
        *,
        fast_path: bool = True,
        horizon_s: float | None = None,
        sample_every_s: float = 1.0,
        sampler: Callable[..., None] | None = None,
        next_arrival: Callable[[], float] | None = None,
        async_scheduling: bool = False,
    ) -> None:
        self.index = index
        self.loop = loop
        self.scheduler = scheduler
        self.step_model = step_model
        self._on_finished = on_finished
        self._stretch_enabled = fast_path
        self._horizon = float("inf") if horizon_s is None else horizon_s
        self._sample_every = sample_every_s
        self._next_sample = 0.0
        self._sampler = sampler
        # When the fleet's next request arrives (s): a stretch is priced up to
        # there in one go, since nothing can cut it earlier.
        self._next_arrival = next_arrival or (lambda: 0.0)
        self._busy = False
        self._wake_pending = False
        self._stretch: _Stretch | None = None
        self._outstanding = 0  # routed here and not finished, as of the last booked event
        # Asynchronous scheduling (vLLM V1's default): the plan of the next step is made when
        # the step before it starts, so a request arriving while a step runs waits for the
        # step after next.  Those requests are held here with their arrival times until then.
        self.async_scheduling = async_scheduling
        self._held: list[Sequence] = []
        self._held_at: list[float] = []
        self._prev_start = 0.0  # start of the step that ended last (s)
        cache, chunks = scheduler.prefix_cache, scheduler.chunk_cache
        # Steps may wait for KV loads: from lower prefix-cache tiers, or a chunk cache off the GPU.
        self._loads = ((cache is not None and bool(cache.tiers)) or (chunks is not None and chunks.bytes_per_s < float("inf"))
                       or scheduler.adapters is not None)
        self.num_steps = 0
        self.busy_time_s = 0.0
        self.busy_prefill_s = 0.0
        self.cache_sampler = None  # samples the prefix cache's books with the time series (set by the owner)
        # The event of the step in flight (its token and start), so that a failure can cancel it.
        self._step_token = -1
        self._step_start = 0.0
        self.down = False  # failed or retired: no event of it runs any more (see abort)
        # Told of each booked step or stretch: (replica index, start s, end s, has prompt tokens); a row power
        # budget splits busy time by the cap its steps ran under (set by the owner; None: nobody listens).
        self.on_booked = None

    # ------------------------------------------------------------------ public

    def submit(self, seq: Sequence, now: float) -> None:
        """Queue an arriving sequence; wake the replica or cut its decode stretch."""
        self._outstanding += 1
        if self._busy and self.async_scheduling:
            self._held.append(seq)
            self._held_at.append(now)
            if self._stretch is not None:
                self._cut_stretch(now)
            return
        self.scheduler.add(seq)
        if self._busy:
            if self._stretch is not None:
                self._cut_stretch(now)
        elif not self._wake_pending:
            self._wake_pending = True
            self.loop.schedule(now, WAKE, self._on_wake)

    def nudge(self, now: float) -> None:
        """Let an idle replica plan again: its KV cache is shared (semi-PD) and may have room now."""
        if not self._busy and not self._wake_pending:
            self._wake_pending = True
            self.loop.schedule(now, WAKE, self._on_wake)

    @property
    def num_outstanding(self) -> int:
        """Requests routed here and not finished as of now (what a router sees).

        Sequences finishing inside a decode stretch in flight are booked when
        it ends; those whose last iteration ended before now are already done.
        """
        return self._outstanding_now()

    def _outstanding_now(self) -> int:
        count = self._outstanding
        stretch = self._stretch
        if stretch is not None and stretch.run.finish_steps:
            now = self.loop.now
            ends = stretch.end_s
            for j in stretch.run.finish_steps:
                # Unpriced iterations lie after now (see _cut_stretch).
                if j >= len(ends) or j >= stretch.num_steps or ends[j] >= now:
                    break
                count -= 1
        return count

    def busy_s_at(self, now: float) -> float:
        """Busy time up to ``now``, the step or decode stretch in flight counted up to ``now``: the
        same on the fast path and step by step (``busy_time_s`` grows only when they end)."""
        if self._stretch is not None:
            return self.busy_time_s + (now - self._stretch.start_s)
        if self._busy:
            return self.busy_time_s + (now - self._step_start)
        return self.busy_time_s

    @property
    def kv_usage(self) -> float:
        """Fraction of the KV-cache blocks in use as of now (what a router sees)."""
        return self._kv_used_now() / self.scheduler.kv.num_blocks

    def _kv_used_now(self) -> int:
        """KV blocks in use as of now, as an iteration-by-iteration run would hold them.

        Inside a decode stretch the blocks its iterations need are granted at
        its end; the blocks in use now are those once the last iteration that
        started before now was planned.  (An iteration starting exactly now
        is planned after an arrival at the same instant: arrivals come first.)
        """
        stretch = self._stretch
        if stretch is None:
            return self.scheduler.kv.num_used_blocks
        priced = len(stretch.end_s)
        last = stretch.num_steps if stretch.num_steps < priced else priced
        # Iteration j >= 1 starts at end_s[j - 1]; iteration 0 at the stretch's start.
        started = 1 + bisect_left(stretch.end_s, self.loop.now, 0, last - 1)
        return self.scheduler.run_blocks_used(stretch.plan, stretch.run, started)

    def has_adapter(self, adapter: int) -> bool:
        """Whether the replica holds this LoRA adapter in GPU memory (False without adapters)."""
        adapters = self.scheduler.adapters
        return adapters is not None and adapters.holds(adapter)

    def prefix_match(self, block_ids: tuple[int, ...]) -> int:
        """Leading prefix blocks of a prompt this replica's prefix cache holds (0 without one)."""
        cache = self.scheduler.prefix_cache
        return 0 if cache is None or not block_ids else cache.peek(block_ids)

    @property
    def step_phase(self) -> int:
        """What the replica runs now: 0 nothing, 1 pure decode (a stretch), 2 a step with prompt tokens."""
        if not self._busy:
            return 0
        return 1 if self._stretch is not None else 2

    def set_step_model(self, step_model: StepPricer, now: float) -> None:
        """Price iterations from ``now`` on with ``step_model`` (a power cap changed).  The
        iteration in flight keeps its price; a decode stretch ends at its first iteration
        boundary at or after ``now``, where an iteration-by-iteration run prices the next one."""
        self.step_model = step_model
        if self._stretch is not None:
            self._cut_stretch(now)

    @property
    def num_tokens_produced(self) -> int:
        """Output tokens this replica's iterations sampled (the scheduler's own count)."""
        return self.scheduler.num_tokens_produced

    @property
    def held(self) -> list[Sequence]:
        """Requests that arrived during the step in flight and wait for the next plan
        (asynchronous scheduling): not in the scheduler yet, holding no KV blocks."""
        return list(self._held)

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting + len(self._held)

    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    # ------------------------------------------------------------------ events

    def abort(self, now: float) -> list[Sequence]:
        """The replica fails at ``now``: its step in flight is lost, its KV cache freed and no
        event of it runs again.  Returns the requests it held (running first, then waiting),
        their progress as of their last completed step; the caller re-queues or fails them.

        The interrupted step counts as busy time up to ``now`` (the GPUs were running it).
        """
        if self._stretch is not None:
            self.loop.cancel(self._stretch.token)
            self.busy_time_s += now - self._stretch.start_s
            self._stretch = None
        elif self._busy:
            self.loop.cancel(self._step_token)
            self.busy_time_s += now - self._step_start
            self.busy_prefill_s += now - self._step_start
        self.down = True
        self._busy = False
        sched = self.scheduler
        sched.materialize()
        lost = list(sched.running) + list(sched.waiting)
        for seq in lost:
            sched.kv.free(seq.rid)
            if sched.adapters is not None:
                sched.adapters.release(seq.rid)
        lost += self._held  # arrived during the last step, never scheduled: they hold nothing
        self._held, self._held_at = [], []
        sched.running = []
        while len(sched.waiting):
            sched.waiting.pop()
        self._outstanding = 0
        return lost

    def _on_wake(self, now: float, _payload: object) -> None:
        self._wake_pending = False
        if self.down:
            return
        if not self._busy:
            self._start_step(now)

    def _release_held(self, until_s: float) -> None:
        """Hand the scheduler the held requests that arrived at or before ``until_s``."""
        held, at = self._held, self._held_at
        k = bisect_right(at, until_s)
        for seq in held[:k]:
            self.scheduler.add(seq)
        del held[:k], at[:k]

    def _start_step(self, now: float) -> None:
        if self._held:
            # This step was planned when the previous one started; on an idle engine, now.
            self._release_held(self._prev_start if self._busy else now)
        plan = self.scheduler.schedule(now)
        if plan is None and self._held:
            # Nothing was planned ahead: the engine plans again at once, with everything.
            self._release_held(now)
            plan = self.scheduler.schedule(now)
        if now >= self._next_sample and self._sampler is not None:
            self._sample(now)
        if plan is None:
            self._busy = False
            return
        self._busy = True
        if plan.is_pure_decode:
            self._start_decode(plan, now)
        else:
            compute = self.step_model.time_s(plan.shape)
            if self._loads:
                # KV the step's admissions brought from lower tiers or a chunk cache.
                compute += self.scheduler.take_load_stall_s(compute)
            self._step_start = now
            self._step_token = self.loop.schedule(now + compute, STEP_DONE, self._on_step_done, (plan, now))

    def _start_decode(self, plan: BatchPlan, now: float) -> None:
        run = self.scheduler.decode_run(plan, MAX_STRETCH_STEPS if self._stretch_enabled else 1)
        stretch = _Stretch(plan, run, now, self.scheduler.num_waiting)
        if self._held:
            # Requests held for the next plan join after this iteration: it ends the stretch.
            stretch.num_steps = 1
        stretch.price(PRICE_CHUNK, self.step_model, self._horizon, self._next_arrival())
        stretch.token = self.loop.schedule(stretch.event_time_s(), STEP_DONE, self._on_stretch_done)
        self._stretch = stretch

    def _cut_stretch(self, now: float) -> None:
        """An arrival at ``now``: end the stretch at the first iteration boundary >= now.

        That boundary is always priced: the stretch's event (at the end of the
        priced iterations) has not fired yet, so it lies at or after ``now``.
        """
        stretch = self._stretch
        ends = stretch.end_s
        # With asynchronous scheduling the arrival joins the step after the next boundary's.
        steps = bisect_left(ends, now) + (2 if self.async_scheduling else 1)
        if steps < stretch.num_steps:
            stretch.num_steps = steps
            # The event moves only if the cut lands before the priced chunk's end.
            if steps < len(ends):
                self.loop.cancel(stretch.token)
                stretch.token = self.loop.schedule(ends[steps - 1], STEP_DONE, self._on_stretch_done)

    def _on_step_done(self, now: float, payload: tuple[BatchPlan, float]) -> None:
        plan, start = payload
        self._prev_start = start
        self.num_steps += 1
        self.busy_time_s += now - start
        self.busy_prefill_s += now - start  # steps with prompt tokens (pure decode runs as stretches)
        if self.on_booked is not None:
            self.on_booked(self.index, start, now, True)
        self._finish(self.scheduler.on_step_done(plan, now), now)

    def _on_stretch_done(self, now: float, _payload: object) -> None:
        stretch = self._stretch
        if len(stretch.end_s) < stretch.num_steps:
            # A checkpoint: price the next chunk and carry on.
            stretch.price(PRICE_CHUNK, self.step_model, self._horizon, self._next_arrival())
            stretch.token = self.loop.schedule(stretch.event_time_s(), STEP_DONE, self._on_stretch_done)
            return
        self._stretch = None
        steps = stretch.num_steps
        self._prev_start = stretch.end_s[steps - 2] if steps >= 2 else stretch.start_s
        if self._sampler is not None and steps > 1:
            self._sample_inside(stretch)
        self.num_steps += steps
        self.busy_time_s += now - stretch.start_s
        if self.on_booked is not None:
            self.on_booked(self.index, stretch.start_s, now, False)
        self._finish(self.scheduler.apply_decode_run(stretch.plan, stretch.run, stretch.end_s[:steps]), now)

    def _finish(self, finished: list[Sequence], now: float) -> None:
        if finished:
            self._outstanding -= len(finished)
            self._on_finished(finished, now)
        self._start_step(now)

    def _sample_inside(self, stretch: _Stretch) -> None:
        """Take the samples an iteration-by-iteration run would take at the
        stretch's inner iteration starts (the last one is a real step start)."""
        inner = stretch.end_s[: stretch.num_steps - 1]
        j = bisect_left(inner, self._next_sample)
        total = self.scheduler.kv.num_blocks
        every = self._sample_every
        while j < len(inner):
            t = inner[j]
            # Iteration j + 1 (0-based) starts at t with room for j + 2 tokens more.
            used = self.scheduler.run_blocks_used(stretch.plan, stretch.run, j + 2)
            self._sampler(t, self.index, stretch.num_waiting, stretch.run.batch(j + 1), used, total)
            self._next_sample = (t // every + 1.0) * every
            j = bisect_left(inner, self._next_sample)

    def _sample(self, now: float) -> None:
        kv = self.scheduler.kv
        self._sampler(now, self.index, self.scheduler.num_waiting, self.scheduler.num_running,
                      kv.num_used_blocks, kv.num_blocks)
        if self.cache_sampler is not None:
            self.cache_sampler(now, self.index, self.scheduler.prefix_cache)
        every = self._sample_every
        self._next_sample = (now // every + 1.0) * every
