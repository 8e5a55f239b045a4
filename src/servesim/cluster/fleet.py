"""Fleet operations: replicas that start, serve, drain, fail and come back.

A ``Fleet`` sits between the arrivals and the router of a colocated
``Simulation``.  Each replica slot is in one state::

    OFF --start--> STARTING --cold start--> ACTIVE --drain--> DRAINING --empty--> OFF
                                              |  (failure)       |
                                              +-----> DOWN <-----+
    DOWN --detected + restart_s--> ACTIVE   (recovery "restart")
    DOWN --detected--> OFF, and a new replica starts   (recovery "replace")

Only ACTIVE replicas take new requests (``Simulation._entry``).  A request that
arrives while none is ACTIVE waits in the fleet's buffer (Knative's activator)
and the fleet makes sure a replica is starting.  Every provisioned second
(STARTING, ACTIVE, DRAINING, DOWN until replaced) is paid for.

Every ``interval_s`` the fleet samples its metrics, asks its autoscaling policy
(``servesim.cluster.autoscaling``) for a replica count and moves towards it,
and fires the failures (``servesim.cluster.failures``) that fall before the
next sample.  The samples stop once every request has ended, so the event loop
drains.

A failed replica keeps receiving requests until the failure is detected (the
router does not know yet); at detection its requests are re-queued (keeping
the tokens already sent, recomputed like a preemption) or failed, by policy.
Nothing is lost silently: each request ends finished, failed with a reason,
or in flight.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from servesim.cluster.events import ARRIVAL

OFF, STARTING, ACTIVE, DRAINING, DOWN = range(5)
STATE_NAMES = ("off", "starting", "active", "draining", "down")


@dataclass
class FleetSample:
    """What the fleet looked like at one sample (the autoscaler's input, and the fleet time series)."""

    time_s: float
    active: int  # replicas taking requests
    starting: int  # replicas in their cold start
    draining: int
    down: int  # failed, not yet recovered
    concurrency: int  # requests in flight on ACTIVE and DRAINING replicas plus those buffered
    waiting: int  # requests queued at replicas plus those buffered
    busy_s: float  # the fleet's total busy time so far (s), for utilization
    gpus: int  # GPUs provisioned


@dataclass
class FleetBooks:
    """Counters of the fleet's life, reported in the summary's ``fleet`` section."""

    scale_ups: int = 0
    scale_downs: int = 0
    cold_starts: int = 0
    failures: int = 0
    node_failures: int = 0
    retried_requests: int = 0  # distinct requests re-queued at least once
    retries: int = 0  # re-queues in all
    failed_requests: int = 0
    lost_tokens: int = 0  # output tokens recomputed after failures (KV lost)
    events: list = field(default_factory=list)  # (time s, replica, what)
    # One row per failure: [time s, replica, cause, how it ended] ("" while it has not ended):
    # "recovered" (restarted, or its cold start done), "replaced", "cancelled" (a scale-down),
    # "turned off" (no replacement: the fleet at max_replicas), "end of run".
    failure_outcomes: list = field(default_factory=list)


class Fleet:
    """Replica lifecycle, the activator buffer and the control loop of one run."""

    def __init__(
        self,
        sim,
        make_replica: Callable[[int], object],
        *,
        initial: int,
        min_replicas: int,
        max_replicas: int,
        gpus_per_replica: int,
        cold_start_s: float,
        interval_s: float,
        metrics_delay_s: float = 0.0,
        policy=None,
        failures=None,
        max_retries: int = 0,
        retry: bool = True,
        elastic=None,
    ) -> None:
        self.sim = sim
        self._make_replica = make_replica  # a fresh replica object for a slot index
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.gpus_per_replica = gpus_per_replica
        self.cold_start_s = cold_start_s
        self.interval_s = interval_s
        self.metrics_delay_s = metrics_delay_s
        self.policy = policy
        self.failures = failures
        self.max_retries = max_retries
        self.retry = retry
        self.elastic = elastic  # an ElasticScaler (servesim.cluster.elastic): scale by GPUs, not replicas
        self.books = FleetBooks()
        self.samples: list[FleetSample] = []
        self.retired: list = []  # replaced replica objects (their tokens stay in the books)
        self.state = [ACTIVE] * initial
        self._since = [-1.0] * initial  # start of the current provisioned interval, -1 while off
        self._paid_s = [0.0] * initial  # closed provisioned intervals
        self._down_s = [0.0] * initial  # time spent DOWN (for availability)
        self._down_since = [-1.0] * initial
        self._served_s = [0.0] * initial  # closed ACTIVE/DRAINING intervals
        self._serving_since = [-1.0] * initial
        self._ready_token = [-1] * initial
        self._replacing = [False] * initial  # starting as a failed replica's replacement (counts as down)
        self._gpus = [gpus_per_replica] * initial  # GPUs each slot holds now (elastic scaling changes it)
        self._paid_gpu_s = [0.0] * initial  # closed GPU-seconds
        self._retired_busy = [0.0] * initial
        self._retired_prefill = [0.0] * initial
        self._lost: dict[int, list] = {}  # replica -> requests lost at its failure, awaiting detection
        self._open_failures: dict[int, list[int]] = {}  # replica -> its failures not yet ended (rows of the log)
        self._recovery_due: dict[int, float] = {}  # replica -> when the next step of its recovery is due
        self._initial = initial
        self.started_s: float | None = None  # the first arrival: the initial replicas are paid from here
        self._pending: deque = deque()  # the activator's buffer
        self._retried: set[int] = set()
        self._retry_count: dict[int, int] = {}
        self._total = len(sim.workload)

    # ------------------------------------------------------------ set-up

    def start(self, now: float) -> None:
        """The first arrival: the initial replicas are provisioned from here; sampling starts."""
        self.started_s = now
        for i, st in enumerate(self.state):
            if st == ACTIVE:
                self._since[i] = now
                self._serving_since[i] = now
        if self.failures is not None:
            self.failures.begin(self, now)
        self.sim.loop.schedule(now, ARRIVAL, self._on_tick)

    # ------------------------------------------------------------ arrivals and finishes

    def admit(self, seq, now: float) -> None:
        """An admitted request: to the router if a replica takes requests, else to the buffer."""
        if self.sim._entry:
            self.sim.send(seq, now)
            return
        self.sim._replica[seq.rid] = -1
        self._pending.append(seq)
        if not self._capacity_coming() and self.max_replicas > 0:
            self._start_replica(now)  # scale from zero: the activator wakes the autoscaler at once
            self.books.scale_ups += 1

    def _capacity_coming(self) -> bool:
        """A replica will take the buffered requests without a new start: one is starting, or a
        failed one restarts in place (recovery "restart": every DOWN replica comes back)."""
        if self.count(STARTING):
            return True
        return self.failures is not None and self.failures.recovery == "restart" and self.count(DOWN) > 0

    def on_finished(self, seqs: list, now: float) -> None:
        """Requests finished: a draining replica left empty turns off."""
        if self.policy is not None:
            self.policy.on_finished(seqs, now)
        state, replicas = self.state, self.sim.replicas
        for seq in seqs:
            r = self.sim._replica[seq.rid]
            if 0 <= r < len(state) and state[r] == DRAINING and replicas[r].num_outstanding == 0:
                self._turn_off(r, now)

    def held(self) -> list:
        """Requests the fleet holds: buffered, or lost on a replica whose failure is not yet detected."""
        out = list(self._pending)
        for seqs in self._lost.values():
            out.extend(seqs)
        return out

    # ------------------------------------------------------------ control loop

    def _on_tick(self, now: float, _payload: object) -> None:
        sample = self._sample(now)
        self.samples.append(sample)
        if self.policy is not None:
            desired = self.policy.decide(self._visible(now), now)
            if desired is not None:
                self.scale_to(desired, now)
        if self.failures is not None:
            self.failures.fire_until(self, now, now + self.interval_s)
        if self.sim._num_done < self._total:  # else every request has ended: let the loop drain
            self.sim.loop.schedule(now + self.interval_s, ARRIVAL, self._on_tick)

    def _visible(self, now: float) -> list[FleetSample]:
        """The samples the autoscaler may see: those at least metrics_delay_s old."""
        if self.metrics_delay_s <= 0.0:
            return self.samples
        cutoff = now - self.metrics_delay_s
        k = len(self.samples)
        while k and self.samples[k - 1].time_s > cutoff:
            k -= 1
        return self.samples[:k]

    def _sample(self, now: float) -> FleetSample:
        sim = self.sim
        concurrency = len(self._pending)
        waiting = len(self._pending)
        busy = sum(self._retired_busy)
        for i, st in enumerate(self.state):
            replica = sim.replicas[i]
            busy += replica.busy_s_at(now)
            if st == ACTIVE or st == DRAINING:
                concurrency += replica.num_outstanding
                waiting += replica.num_waiting
        # With elastic scaling, replicas are counted in units of the smallest size.
        active = self.count(ACTIVE) if self.elastic is None else self.elastic.units(self, (ACTIVE,))
        gpus = sum(g for g, st in zip(self._gpus, self.state) if st != OFF)
        return FleetSample(
            now, active, self.count(STARTING), self.count(DRAINING), self.count(DOWN), concurrency, waiting, busy, gpus,
        )

    # ------------------------------------------------------------ scaling

    def count(self, state: int) -> int:
        return sum(1 for s in self.state if s == state)

    def provisioned(self) -> int:
        """Replicas being paid for now."""
        return sum(1 for s in self.state if s != OFF)

    def scale_to(self, desired: int, now: float) -> None:
        """Move towards ``desired`` replicas (ACTIVE or STARTING), within [min, max].

        Up: draining replicas come back first (they are warm), then new ones start.
        Down: replicas still starting are cancelled first (newest first), then the
        ACTIVE replicas with the fewest requests drain.
        """
        if self.elastic is not None:
            self.elastic.scale_to(self, max(self.min_replicas, desired), now)
            return
        desired = max(self.min_replicas, min(self.max_replicas, desired))
        current = self.count(ACTIVE) + self.count(STARTING)
        before = current
        if desired > current:
            for i, st in enumerate(self.state):
                if current < desired and st == DRAINING:
                    self._activate_drained(i, now)
                    current += 1
            while current < desired and self.provisioned() < self.max_replicas:
                self._start_replica(now)
                current += 1
        elif desired < current:
            starting = [i for i, st in enumerate(self.state) if st == STARTING]
            for i in reversed(starting):
                if current > desired:
                    self.sim.loop.cancel(self._ready_token[i])
                    if self._replacing[i]:
                        self._down_s[i] += now - self._down_since[i]
                        self._down_since[i] = -1.0
                        self._replacing[i] = False
                    self._close_paid(i, now)
                    self.state[i] = OFF
                    self.books.events.append((now, i, "cancelled"))
                    self._end_failures(i, "cancelled")
                    current -= 1
            while current > desired and self.count(ACTIVE) > 0:
                r = min(self.sim._entry, key=_load_then_newest)
                self._drain(r.index, now)
                current -= 1
        # Decisions that changed the fleet (a decision capped by max_replicas may change nothing).
        if current > before:
            self.books.scale_ups += 1
        elif current < before:
            self.books.scale_downs += 1

    def _start_replica(self, now: float) -> int:
        """Provision a replica in a free slot (or a new one); it takes requests after its cold start."""
        i = self._free_slot()
        self._replace_object(i, now)  # a new instance: empty memory, no history
        self.state[i] = STARTING
        self._since[i] = now
        self._gpus[i] = self.gpus_per_replica
        self.books.cold_starts += 1
        self.books.events.append((now, i, "start"))
        self._ready_token[i] = self.sim.loop.schedule(now + self.cold_start_s, ARRIVAL, self._on_ready, i)
        return i

    def _free_slot(self) -> int:
        for i, st in enumerate(self.state):
            if st == OFF:
                return i
        i = len(self.state)
        for column, value in ((self.state, OFF), (self._since, -1.0), (self._paid_s, 0.0), (self._down_s, 0.0),
                              (self._down_since, -1.0), (self._served_s, 0.0), (self._serving_since, -1.0),
                              (self._ready_token, -1), (self._replacing, False), (self._gpus, self.gpus_per_replica),
                              (self._paid_gpu_s, 0.0), (self._retired_busy, 0.0), (self._retired_prefill, 0.0)):
            column.append(value)
        sim = self.sim
        sim._setups.append(sim._setups[0])
        sim._fits_on.append(sim._fits_on[0])
        sim._held.append([])
        sim.replicas.append(None)  # filled by _replace_object at once
        return i

    def _on_ready(self, now: float, i: int) -> None:
        """Replica ``i`` finished its cold start (or restart): it takes requests."""
        if self._over():
            self._end_failures(i, "end of run")
            return
        if self._replacing[i]:  # capacity was missing from the failure to here
            self._down_s[i] += now - self._down_since[i]
            self._down_since[i] = -1.0
            self._replacing[i] = False
        self.state[i] = ACTIVE
        self._serving_since[i] = now
        self.books.events.append((now, i, "ready"))
        self._end_failures(i, "recovered")
        self._enter(i)
        if self.failures is not None:
            self.failures.on_up(self, i, now)
        pending, self._pending = self._pending, deque()
        for seq in pending:
            self.sim.send(seq, now)

    def set_gpus(self, i: int, gpus: int, now: float) -> None:
        """Slot ``i`` holds ``gpus`` GPUs from ``now`` (elastic scaling)."""
        if self._since[i] >= 0.0:
            self._paid_gpu_s[i] += (now - self._since[i]) * self._gpus[i]
            self._paid_s[i] += now - self._since[i]
            self._since[i] = now
        self._gpus[i] = gpus

    def _replace_object(self, i: int, now: float) -> None:
        if self.elastic is not None:
            self.elastic.on_new_instance(i)
            self.set_gpus(i, self.gpus_per_replica, now)
        old = self.sim.replicas[i]
        if old is not None:
            self._retired_busy[i] += old.busy_time_s
            self._retired_prefill[i] += old.busy_prefill_s
            old.down = True
            self.retired.append(old)
        self.sim.replicas[i] = self._make_replica(i)

    def _enter(self, i: int) -> None:
        entry = self.sim._entry
        entry.append(self.sim.replicas[i])
        entry.sort(key=_index)
        self.sim._views_taken_s = float("-inf")

    def _leave(self, i: int) -> None:
        entry = self.sim._entry
        replica = self.sim.replicas[i]
        if replica in entry:
            entry.remove(replica)
        self.sim._views_taken_s = float("-inf")

    def _activate_drained(self, i: int, now: float) -> None:
        self.state[i] = ACTIVE
        self.books.events.append((now, i, "undrain"))
        self._enter(i)

    def _drain(self, i: int, now: float) -> None:
        self._leave(i)
        self.state[i] = DRAINING
        self.books.events.append((now, i, "drain"))
        if self.sim.replicas[i].num_outstanding == 0 and not self.sim._held[i]:
            self._turn_off(i, now)

    def _turn_off(self, i: int, now: float) -> None:
        self._close_serving(i, now)
        self._close_paid(i, now)
        self.state[i] = OFF
        self.books.events.append((now, i, "off"))
        if self.failures is not None:
            self.failures.on_gone(self, i)

    def _close_paid(self, i: int, now: float) -> None:
        if self._since[i] >= 0.0:
            self._paid_s[i] += now - self._since[i]
            self._paid_gpu_s[i] += (now - self._since[i]) * self._gpus[i]
            self._since[i] = -1.0

    def _close_serving(self, i: int, now: float) -> None:
        if self._serving_since[i] >= 0.0:
            self._served_s[i] += now - self._serving_since[i]
            self._serving_since[i] = -1.0

    # ------------------------------------------------------------ failures

    def _over(self) -> bool:
        """Every request has ended: the run's span is closed, later fleet events change nothing."""
        return self.sim._num_done >= self._total

    def fail(self, i: int, now: float, cause: str) -> None:
        """Replica ``i`` fails at ``now``: its work stops; requests are handled at detection."""
        if self._over():
            return
        st = self.state[i]
        if st == STARTING:  # fails during its cold start: start over
            self.sim.loop.cancel(self._ready_token[i])
            self.books.failures += 1
            self.books.events.append((now, i, cause))
            self._open_failure(i, now, cause, now + self.cold_start_s)
            self._ready_token[i] = self.sim.loop.schedule(now + self.cold_start_s, ARRIVAL, self._on_ready, i)
            return
        if st != ACTIVE and st != DRAINING:
            return
        self.books.failures += 1
        self.books.events.append((now, i, cause))
        replica = self.sim.replicas[i]
        self._lost[i] = replica.abort(now)
        self._close_serving(i, now)
        self.state[i] = DOWN
        self._down_since[i] = now
        if self.failures is not None:
            self.failures.on_gone(self, i)
        self._open_failure(i, now, cause, now + self.failures.detection_s)
        self.sim.loop.schedule(now + self.failures.detection_s, ARRIVAL, self._on_detected, i)

    def _on_detected(self, now: float, i: int) -> None:
        """The failure of replica ``i`` is noticed: it leaves the router; its requests retry or fail."""
        if self._over():
            self._end_failures(i, "end of run")
            return
        replica = self.sim.replicas[i]
        lost = self._lost.pop(i, []) + replica.abort(now)  # plus those routed to it since
        self._leave(i)
        self.books.events.append((now, i, "detected"))
        if self.failures.recovery == "restart":
            self._recovery_due[i] = now + self.failures.restart_s
            self._ready_token[i] = self.sim.loop.schedule(now + self.failures.restart_s, ARRIVAL, self._on_restarted, i)
        else:
            self._close_paid(i, now)
            self.state[i] = OFF
            down_since, self._down_since[i] = self._down_since[i], -1.0
            self._down_s[i] += now - down_since
            self._end_failures(i, "replaced" if self.provisioned() < self.max_replicas else "turned off")
            if self.provisioned() < self.max_replicas:
                # The replacement, with a full cold start: its slot is down until it is ready.
                j = self._start_replica(now)
                self._replacing[j] = True
                self._down_s[j] -= now - down_since if j == i else 0.0
                self._down_since[j] = down_since if j == i else now
        for seq in lost:
            self._requeue(seq, now)

    def _on_restarted(self, now: float, i: int) -> None:
        if self._over():
            self._end_failures(i, "end of run")
            return
        self._down_s[i] += now - self._down_since[i]
        self._down_since[i] = -1.0
        self.books.events.append((now, i, "restarted"))
        self._replace_object(i, now)  # the restarted process: empty memory
        self._on_ready(now, i)

    def _open_failure(self, i: int, now: float, cause: str, due_s: float) -> None:
        """Log a failure of replica ``i``; the next step of its recovery is due at ``due_s``."""
        self._open_failures.setdefault(i, []).append(len(self.books.failure_outcomes))
        self.books.failure_outcomes.append([now, i, cause, ""])
        self._recovery_due[i] = due_s

    def _end_failures(self, i: int, outcome: str) -> None:
        """Replica ``i``'s failures (if any) ended in ``outcome``."""
        for k in self._open_failures.pop(i, ()):
            self.books.failure_outcomes[k][3] = outcome
        self._recovery_due.pop(i, None)

    def recovery_due_s(self, i: int) -> float:
        """When the next step of replica ``i``'s recovery is due (inf: none pending)."""
        return self._recovery_due.get(i, math.inf)

    def _requeue(self, seq, now: float) -> None:
        """A request lost with its replica: retried from its last token (KV recomputed), or failed."""
        rid = seq.rid
        if not self.retry:
            self.books.failed_requests += 1
            self.sim.fail_request(seq, "replica_failed")
            return
        count = self._retry_count.get(rid, 0) + 1
        if count > self.max_retries:
            self.books.failed_requests += 1
            self.sim.fail_request(seq, "retries_exhausted")
            return
        self._retry_count[rid] = count
        self._retried.add(rid)
        self.books.retries += 1
        self.books.retried_requests = len(self._retried)
        self.books.lost_tokens += seq.num_generated
        seq.num_computed = 0
        self.admit(seq, now)

    # ------------------------------------------------------------ books

    def replica_seconds(self, end_s: float) -> list[float]:
        """Provisioned seconds of each slot up to ``end_s``."""
        return [paid + (end_s - since if since >= 0.0 and end_s > since else 0.0)
                for paid, since in zip(self._paid_s, self._since)]

    def gpu_seconds(self, end_s: float) -> list[float]:
        """Provisioned GPU-seconds of each slot up to ``end_s``."""
        return [paid + (end_s - since) * g if since >= 0.0 and end_s > since else paid
                for paid, since, g in zip(self._paid_gpu_s, self._since, self._gpus)]

    def logged_gpu_seconds(self, end_s: float) -> float:
        """Provisioned GPU-seconds up to ``end_s`` rebuilt from the event log alone (the cost books'
        second entry, ``servesim.cluster.conservation``): a slot is paid from the first arrival
        (the initial replicas) or its "start" until "off", "cancelled" or, with recovery
        "replace", its failure's "detected"; elastic "grow"/"shrink" events change its GPUs."""
        base = self.gpus_per_replica
        opened: dict[int, tuple[float, int]] = {}  # slot -> (paid since, GPUs)
        if self.started_s is not None:
            opened = {i: (self.started_s, base) for i in range(self._initial)}
        replace = self.failures is not None and self.failures.recovery == "replace"
        total = 0.0
        for t, i, what in self.books.events:
            gpus = None
            if what == "start" or what == "restarted":
                gpus = base
            elif what.startswith(("grow to ", "shrink to ")):
                gpus = int(what.split()[2])
            elif not (what == "off" or what == "cancelled" or (what == "detected" and replace)):
                continue
            since = opened.pop(i, None)
            if since is not None:
                total += (t - since[0]) * since[1]
            if gpus is not None:
                opened[i] = (t, gpus)
        for since, gpus in opened.values():
            if end_s > since:
                total += (end_s - since) * gpus
        return total

    def unpaid_slots(self) -> list[int]:
        """Slots whose state and pay disagree: provisioned but not paid for, or off but paid for."""
        return [i for i, (st, since) in enumerate(zip(self.state, self._since)) if (st != OFF) != (since >= 0.0)]

    def busy_by_slot(self) -> tuple[list[float], list[float]]:
        """(busy, busy in steps with prompt tokens) seconds of each slot, over all its instances."""
        busy = [self._retired_busy[i] + (r.busy_time_s if r is not None else 0.0) for i, r in enumerate(self.sim.replicas)]
        prefill = [self._retired_prefill[i] + (r.busy_prefill_s if r is not None else 0.0)
                   for i, r in enumerate(self.sim.replicas)]
        return busy, prefill

    def availability(self, end_s: float) -> float | None:
        """Share of the replicas' started time (serving or down) they could serve."""
        served = sum(s + (end_s - since if since >= 0.0 and end_s > since else 0.0)
                     for s, since in zip(self._served_s, self._serving_since))
        down = sum(d + (end_s - since if since >= 0.0 and end_s > since else 0.0)
                   for d, since in zip(self._down_s, self._down_since))
        return None if served + down <= 0.0 else served / (served + down)

    def retried_ids(self) -> list[int]:
        """Ids of the requests re-queued after a failure at least once, in increasing order."""
        return sorted(self._retried)


def _index(replica) -> int:
    return replica.index


def _load_then_newest(replica) -> tuple:
    """Drain order: the replica with the fewest requests, the newest (highest index) among equals."""
    return (replica.num_outstanding, -replica.index)


def cold_start_seconds(
    weight_bytes: float, gpus: int, source: str, bandwidth_gb_per_s: float | None, nvlink_bytes_per_s: float,
    provisioning_s: float, warmup_s: float,
) -> tuple[float, float]:
    """(load seconds, total cold start seconds) of a replica with ``weight_bytes`` of weights on ``gpus`` GPUs.

    From storage the replica shares one stream of ``bandwidth`` (default 2 GB/s); from host
    memory (default 25 GB/s, PCIe 4 x16) or a peer GPU (default: NVLink) each GPU loads its
    own shard at ``bandwidth``, in parallel.
    """
    if source == "storage":
        rate = (bandwidth_gb_per_s or 2.0) * 1e9
        load = weight_bytes / rate
    else:
        per_gpu = (bandwidth_gb_per_s * 1e9 if bandwidth_gb_per_s is not None
                   else 25e9 if source == "host_memory" else nvlink_bytes_per_s)
        load = weight_bytes / gpus / per_gpu
    if not math.isfinite(load):
        raise ValueError(f"weight load time is not finite ({load!r})")
    return load, provisioning_s + load + warmup_s
