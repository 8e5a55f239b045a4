"""The scenario's simulation driven by the wall clock: the engine behind ``servesim serve``.

Clock (``SimClock``).  Simulated time starts at 0 when the engine starts and runs ``time_scale``
times as fast as the wall clock: wall time ``w`` is simulated time ``(w - w0) * time_scale``.

Arrivals.  ``submit`` first runs every event strictly before the current simulated time ``t``,
then schedules the request's arrival as an ``ARRIVAL`` event at ``t`` and runs the instant: the
arrival comes before an iteration ending at the same instant, as in a trace-driven run, and the
scenario's router and the replica's scheduler take it from there (``Simulation.arrive``).

Advancing.  The event loop is only ever advanced up to the current simulated time, never past
it, so a later arrival finds the fleet as a trace-driven run would at that instant.  The driver
task sleeps until the next event (or the next token due to a client, or an arrival wakes it),
then advances one instant at a time.  After each instant it reads the token counter of every
request in flight: on the reference path each iteration is an event that books one token per
request as it ends, so new tokens were made at that instant (``Sequence.last_token_s``).

Release.  A token made at simulated time ``t`` reaches its client when the simulated clock
passes ``t + frontend_latency_s`` (the front end's fixed delay, which ``servesim run`` adds to
TTFT and finish times too), i.e. at wall time ``w0 + (t + frontend_latency_s) / time_scale``.
A request ends when its last token is released, or with an error when fleet operations fail it
(its replica failed: ``Simulation.request_status`` says FAILED) or the engine stops.  If the
process cannot keep up, tokens go out late, never early; ``lag_s`` says by how much at most.

Everything runs on one asyncio loop (the server's): handlers and the driver take turns between
``await``s and never run at once, so no lock guards the simulation.  A client that goes away does
not cancel its request: the simulated engine finishes it (vLLM would abort it).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from typing import Callable, Protocol

from servesim.cluster.events import ARRIVAL
from servesim.live.serve.scenario import ServeSetup
from servesim.metrics.records import FAILED, REJECTED
from servesim.scheduler.sequence import Sequence

log = logging.getLogger("servesim.serve")

_INF = float("inf")
# Log a warning when tokens leave this much wall time late, at most every _LAG_WARN_EVERY_S.
_LAG_WARN_S = 0.1
_LAG_WARN_EVERY_S = 10.0


class Rejected(Exception):
    """The simulation rejected the request at arrival (``reason``: a ``REJECT_REASONS`` entry)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unavailable(Exception):
    """The engine takes no more requests: stopped, broken, or out of simulation rows."""


class SimClock:
    """Simulated seconds since the start, ``time_scale`` per wall-clock second."""

    def __init__(self, time_scale: float, wall: Callable[[], float] = time.monotonic) -> None:
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale = {time_scale!r}: must be a positive number")
        self.time_scale = time_scale
        self._wall = wall
        self._start = wall()

    def start(self) -> None:
        """Simulated time 0 is now."""
        self._start = self._wall()

    def now_s(self) -> float:
        """The current simulated time (s)."""
        return (self._wall() - self._start) * self.time_scale

    def wall_delay_s(self, sim_s: float) -> float:
        """Wall seconds from now until the simulated clock reads ``sim_s`` (0 if it has)."""
        return max(0.0, self._start + sim_s / self.time_scale - self._wall())


class LiveRequest:
    """One client's request as the client has seen it so far; the engine writes, the handler reads.

    Times are simulated seconds since the engine started, as ``servesim run`` reports them:
    ``token_times_s`` holds when each released token reached the client (made + front-end delay).
    """

    def __init__(self, seq: Sequence, adapter: int) -> None:
        self.rid = seq.rid
        self.arrival_s = seq.arrival_s
        self.num_prompt = seq.num_prompt
        self.max_tokens = seq.max_output
        self.adapter = adapter
        self.token_times_s: list[float] = []
        self.replica = -1  # where it was last routed (-1: not yet)
        self.queue_s = math.nan  # arrival to first scheduled (s)
        self.num_preemptions = 0
        self.done = False  # every token released, or ended by ``error``
        self.error: str | None = None  # why it ended unserved
        self._seq = seq
        self._made = 0  # tokens the simulation made (>= released)
        self._last_made_s = 0.0  # when the latest of them was made
        self._changed = asyncio.Event()

    @property
    def num_released(self) -> int:
        return len(self.token_times_s)

    @property
    def first_token_s(self) -> float:
        return self.token_times_s[0] if self.token_times_s else math.nan

    @property
    def finish_s(self) -> float:
        return self.token_times_s[-1] if self.done and self.error is None and self.token_times_s else math.nan

    async def wait(self) -> None:
        """Until tokens are released or the request ends (returns at once if that happened since)."""
        await self._changed.wait()
        self._changed.clear()


class RequestObserver(Protocol):
    """Told what clients receive (``servesim.live.serve.metrics.ServeMetrics``)."""

    def on_released(self, live: LiveRequest, times_s: list[float]) -> None:
        """Tokens of ``live`` reached its client at ``times_s`` (already in ``token_times_s``)."""

    def on_ended(self, live: LiveRequest) -> None:
        """``live`` ended: served in full, or failed (``live.error``)."""


class LiveEngine:
    """A ``ServeSetup``'s simulation on the wall clock (see the module docstring)."""

    def __init__(self, setup: ServeSetup, time_scale: float = 1.0, observer: RequestObserver | None = None,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.setup = setup
        self.sim = setup.sim
        self.clock = SimClock(time_scale, wall)
        self.observer = observer
        self.lag_s = 0.0  # the latest any token left, in wall seconds
        self._latency_s = setup.frontend_latency_s
        self._in_flight: dict[int, LiveRequest] = {}  # made tokens still to come
        self._pending: list[tuple] = []  # (release s, order, request, token times, ends, error): a heap
        self._order = 0
        self._next_rid = 0
        self._failed_seen = 0  # fleet requests failed, as of the last look
        self._stopped: str | None = None  # why the engine takes no more requests
        self._wake: asyncio.Event | None = None
        self._driver: asyncio.Task | None = None
        self._lag_warned_s = -_INF

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the clock and the driver task (inside the server's running event loop)."""
        self.clock.start()
        self._wake = asyncio.Event()
        self._driver = asyncio.get_running_loop().create_task(self._drive(), name="servesim-serve-engine")

    async def stop(self) -> None:
        """Stop the driver; requests still in flight end with an error."""
        self.halt("the server is shutting down")
        if self._driver is not None:
            self._driver.cancel()
            try:
                await self._driver
            except asyncio.CancelledError:
                pass

    # ------------------------------------------------------------------ requests

    def submit(self, num_prompt: int, max_tokens: int, *, adapter: int = -1, priority: int = 0,
               session: str | None = None, prefix: tuple[int, ...] = ()) -> LiveRequest:
        """A client's request arrives now.  Raises ``Rejected`` when the simulation rejects it at
        arrival (too long for any replica) and ``Unavailable`` when the engine takes no more."""
        if self._stopped is not None:
            raise Unavailable(self._stopped)
        if self._next_rid >= self.setup.max_requests:
            raise Unavailable(f"this server has taken its {self.setup.max_requests:,} requests (--max-requests); "
                              "restart it")
        now = self.clock.now_s()
        self._advance(math.nextafter(now, -_INF))  # every event before the arrival, not those at it
        rid = self._next_rid
        self._next_rid += 1
        seq = Sequence(rid, now, num_prompt, max_tokens, priority, session)
        seq.adapter = adapter
        seq.prefix = prefix
        live = LiveRequest(seq, adapter)
        self._in_flight[rid] = live
        self.sim.loop.schedule(now, ARRIVAL, self._on_arrival, seq)
        self._advance(now)
        if self._stopped is not None:
            raise Unavailable(self._stopped)
        status, reason, _ = self.sim.request_status(rid)
        if status == REJECTED:
            del self._in_flight[rid]
            raise Rejected(reason)
        if self._wake is not None:
            self._wake.set()  # the driver's next wake-up may be sooner now
        return live

    def advance(self) -> None:
        """Bring the simulation up to the current simulated time (a reader wants current state)."""
        self._advance(self.clock.now_s())

    def halt(self, why: str) -> None:
        """Take no more requests; end every request not yet served with the error ``why``."""
        if self._stopped is not None:
            return
        self._stopped = why
        waiting = {id(live): live for live in self._in_flight.values()}
        waiting.update((id(entry[2]), entry[2]) for entry in self._pending)
        self._in_flight.clear()
        self._pending.clear()
        for live in waiting.values():
            if not live.done:
                live.done = True
                live.error = why
                if self.observer is not None:
                    self.observer.on_ended(live)
                live._changed.set()

    @property
    def stopped(self) -> str | None:
        """Why the engine takes no more requests (stopping, or its simulation failed), or None."""
        return self._stopped

    @property
    def replicas(self) -> list:
        """The fleet's replicas as of now (fleet operations replace failed ones)."""
        return self.sim.replicas

    @property
    def num_in_flight(self) -> int:
        return len(self._in_flight)

    # ------------------------------------------------------------------ driver

    async def _drive(self) -> None:
        """Advance with the wall clock until stopped (or the simulation fails: see ``_advance``)."""
        loop = asyncio.get_running_loop()
        while self._stopped is None:
            self._advance(self.clock.now_s())
            delay = self.clock.wall_delay_s(self._next_due_s())
            self._wake.clear()
            timer = loop.call_later(delay, self._wake.set) if delay < _INF else None
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    def _next_due_s(self) -> float:
        """Simulated time of the next event or the next token due to a client."""
        due = self.sim.loop.peek()
        due = _INF if due is None else due
        return min(due, self._pending[0][0]) if self._pending else due

    def _advance(self, until_s: float) -> None:
        """Run the simulation one instant at a time up to ``until_s``, collecting each instant's
        tokens, then release what is due by ``until_s``.  An error inside the simulation (a
        servesim bug) stops the engine: every request in flight ends with it, none hangs."""
        if self._stopped is not None:
            return
        try:
            self._run_until(until_s)
        except Exception as err:  # noqa: BLE001 - every client hears of it, and the log has the traceback
            log.exception("servesim serve: the simulation failed")
            self.halt(f"the simulation failed ({type(err).__name__}: {err}); this is a bug in servesim")

    def _run_until(self, until_s: float) -> None:
        loop = self.sim.loop
        while True:
            t = loop.peek()
            if t is None or t > until_s:
                break
            loop.run(until=t)
            if self._in_flight:
                self._collect(t)
        self._release(until_s)

    def _on_arrival(self, now: float, seq: Sequence) -> None:
        self.sim.arrive(seq, now)

    # ------------------------------------------------------------------ collect and release

    def _collect(self, now: float) -> None:
        """Tokens made at ``now``; requests that finished or failed at ``now``."""
        ended: set[int] = set()
        for rid, live in self._in_flight.items():
            seq = live._seq
            made = seq.num_generated
            if made > live._made:
                self._made_tokens(live, seq, made, now)
                if made >= seq.max_output:
                    ended.add(rid)
        fleet = self.sim.fleet
        if fleet is not None and fleet.books.failed_requests != self._failed_seen:
            self._failed_seen = fleet.books.failed_requests
            for rid, live in self._in_flight.items():
                status, reason, replica = self.sim.request_status(rid)
                if status == FAILED and rid not in ended:
                    ended.add(rid)
                    self._schedule(now + self._latency_s, live, [], True,
                                   f"replica {replica} failed and the request was lost ({reason})")
        for rid in ended:
            del self._in_flight[rid]

    def _made_tokens(self, live: LiveRequest, seq: Sequence, made: int, now: float) -> None:
        """Book the tokens ``live`` gained up to ``now`` and schedule their release."""
        new = made - live._made
        last = seq.last_token_s
        if new == 1 or live._made == 0:
            times = [last] * new  # the reference path makes one token per iteration, at its end
        else:  # (should several appear at one instant, they are spread since the previous one)
            prev = live._last_made_s
            times = [prev + (last - prev) * (k + 1) / new for k in range(new)]
        live._made = made
        live._last_made_s = last
        if math.isnan(live.queue_s) and seq.first_scheduled_s >= 0.0:
            live.queue_s = seq.first_scheduled_s - live.arrival_s
        live.num_preemptions = seq.num_preemptions
        if live.replica < 0 or made >= seq.max_output or seq.num_preemptions:
            live.replica = self.sim.request_status(live.rid)[2]
        lat = self._latency_s
        self._schedule(now + lat, live, [t + lat for t in times], made >= seq.max_output, None)

    def _schedule(self, release_s: float, live: LiveRequest, times: list[float], ends: bool, error: str | None) -> None:
        self._order += 1
        heapq.heappush(self._pending, (release_s, self._order, live, times, ends, error))

    def _release(self, until_s: float) -> None:
        """Hand clients what is due by ``until_s``."""
        pending = self._pending
        if pending and pending[0][0] <= until_s:
            self._note_lag(until_s - pending[0][0])
        while pending and pending[0][0] <= until_s:
            _, _, live, times, ends, error = heapq.heappop(pending)
            if live.done:
                continue
            if times:
                live.token_times_s.extend(times)
                if self.observer is not None:
                    self.observer.on_released(live, times)
            if ends:
                live.done = True
                live.error = error
                if self.observer is not None:
                    self.observer.on_ended(live)
            live._changed.set()

    def _note_lag(self, late_sim_s: float) -> None:
        lag = late_sim_s / self.clock.time_scale
        self.lag_s = max(self.lag_s, lag)
        wall = time.monotonic()
        if lag > _LAG_WARN_S and wall - self._lag_warned_s > _LAG_WARN_EVERY_S:
            self._lag_warned_s = wall
            log.warning("servesim serve: tokens left %.3f s late (wall clock): the simulation cannot keep up; "
                        "lower --time-scale or the load", lag)
