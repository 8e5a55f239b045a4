"""Wiring of one run: arrivals -> router -> replicas -> per-request records.

``Simulation`` owns the event loop, the replicas and the result columns.  It
streams the workload in: only the next arrival is on the event heap, so the
heap stays small however long the trace is.  Requests that can never be
served (longer than the model's context, more KV than the replica has, or a
prompt over the token budget without chunked prefill) are rejected at
arrival with a reason.

Topologies (docs/cluster.md): with prefill/decode disaggregation the first
replicas run prompts only and ``_on_prefilled`` sends each KV cache over
its replica's link to a decode replica (``_on_kv_arrived``); with prefill
offload those first replicas are a remote cluster that takes long prompts
(``_place``); LAPS's batching window holds short prompts (``_dispatch``).
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from servesim.cluster.disaggregation import KvLink, PdSetup
from servesim.cluster.events import ARRIVAL
from servesim.cluster.replica import Replica
from servesim.cluster.routers import LeastOutstandingRouter, Router
from servesim.cluster.semi_pd import SemiPdController, SemiPdSetup
from servesim.cluster.views import ReplicaSnapshot
from servesim.core.events import EventLoop
from servesim.kvcache.manager import KVCacheManager
from servesim.kvcache.prefix_cache import PrefixCachingKVManager
from servesim.metrics.kv_cache import KvCacheSeries
from servesim.metrics.records import FAILED, FINISHED, IN_FLIGHT, REJECTED, RequestTable, TimeSeries, TimeSeriesBuilder
from servesim.scheduler.batch_scheduler import BatchScheduler
from servesim.scheduler.lockstep import LockstepScheduler
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.sequence import Sequence
from servesim.workload.request import Workload

# Rows of the workload converted to Python lists at a time (bounds memory).
_CHUNK = 65536

# Roles of a replica in a disaggregated run.
PREFILL, DECODE = 0, 1

# Why a request can never be served, or (the last two) why it failed; index 0 means neither.
REJECT_REASONS = ("", "exceeds_max_model_len", "exceeds_kv_capacity", "exceeds_token_budget", "fits_no_pool",
                  "replica_failed", "retries_exhausted")


class ProgressSink(Protocol):
    def update(self, sim_time_s: float, done: int) -> None: ...


@dataclass(frozen=True)
class ReplicaSetup:
    """What every replica of the run is built from."""

    num_kv_blocks: int
    block_size: int
    max_model_len: int
    scheduler: SchedulerConfig
    # Prefix caching (0: off): the workload's prefix block in tokens, a token's KV bytes
    # (what lower tiers move), and a factory of the replica's lower KV tiers (CPU, SSD, ...).
    prefix_block_tokens: int = 0
    kv_bytes_per_token: float = 0.0
    make_kv_tiers: Callable[[], list] | None = None
    # A factory of the replica's RAG chunk cache (None: no chunk cache).
    make_chunk_cache: Callable[[], object] | None = None
    # A factory of the replica's LoRA adapter store, given its KV manager (None: no adapters).
    make_adapters: Callable[[object], object] | None = None
    # The KV manager caches entries (prefix blocks, or LoRA adapters in its pool) even without chains.
    entry_cache: bool = False
    # The engine plans each step while the one before it runs (vLLM V1's asynchronous scheduling).
    async_scheduling: bool = False


@dataclass
class SimulationOutput:
    requests: RequestTable
    timeseries: TimeSeries
    sim_time_s: float
    busy_time_s: np.ndarray
    num_steps: int
    num_events: int
    role_switches: list = field(default_factory=list)  # (time s, replica, new role) of each completed switch
    split_changes: list = field(default_factory=list)  # semi-PD: (time s, replica, new prefill share)


class Simulation:
    """One run of a cluster of identical replicas over a workload."""

    def __init__(
        self,
        workload: Workload,
        setup: ReplicaSetup,
        num_replicas: int,
        router: Router,
        step_model,
        *,
        horizon_s: float | None = None,
        fast_path: bool = True,
        timeseries_interval_s: float = 1.0,
        progress: ProgressSink | None = None,
        view_delay_s: float = 0.0,
        hold_short_s: float = 0.0,
        short_prompt_tokens: int = 0,
        pd: PdSetup | None = None,
        pools: list[tuple[ReplicaSetup, object, int]] | None = None,
        semi_pd: SemiPdSetup | None = None,
    ) -> None:
        self.workload = workload
        self.setup = setup
        self.router = router
        self.horizon_s = horizon_s
        # The serving front end's fixed time per request (API server, tokenizer, streaming): a
        # client sees every token this much after the engine made it (s).
        self.frontend_latency_s = 0.0
        self.loop = EventLoop()
        self.progress = progress
        self.timeseries = TimeSeriesBuilder()
        # Disaggregated: replicas [0, num_prefill) start out running prompts, the rest
        # generating; with prefill offload [0, num_prefill) are the remote cluster.
        self._pd = pd
        self._num_prefill = pd.num_prefill if pd is not None else num_replicas
        # semi-PD: the two workers of a replica share one KV cache manager.
        self._paired = pd is not None and pd.paired
        self._shared_kv: dict[int, KVCacheManager] = {}
        self._semi_control = None if semi_pd is None or semi_pd.interval_s <= 0.0 else SemiPdController(semi_pd)
        self._roles = [PREFILL if i < self._num_prefill else DECODE for i in range(num_replicas)]
        # Closed-loop workloads (agent programs) plan iteration by iteration: a call finishing
        # inside a decode stretch would send its program's next call inside the stretch's
        # priced horizon, which assumes no arrival can come before the next one known.
        if workload.follows is not None or setup.make_adapters is not None:
            fast_path = False  # (LoRA adapters: their room is taken and given back iteration by iteration)
        self._adapter_ids = None if workload.adapter_ids is None else workload.adapter_ids.tolist()
        # A heterogeneous cluster: (setup, step model, replicas) per pool, in replica order.
        layout = pools if pools is not None else [(setup, step_model, num_replicas)]
        self._setups = [pool_setup for pool_setup, _, count in layout for _ in range(count)]
        models = [model for _, model, count in layout for _ in range(count)]
        if len(self._setups) != num_replicas:
            raise ValueError(f"pools hold {len(self._setups)} replicas, expected num_replicas = {num_replicas}")
        self._hetero = len(layout) > 1
        self.pool_profiles: list = []  # what model routers know of each pool (set by the caller)
        # Fleet operations (servesim.cluster.fleet.Fleet, set by the caller): replicas come, go and
        # fail; arrivals pass through it, and it hears of every finish.
        self.fleet = None
        self.disturbances = None  # stragglers, interference, link degradation (servesim.cluster.failures)
        self.semi_pd_splits: list = []  # semi-PD: each replica's SM split (set by the caller)
        self.replicas = [
            self._make_replica(i, models[i], fast_path, timeseries_interval_s) for i in range(num_replicas)
        ]
        # The prefix caches' books over time, when there are prefix caches.
        self.kv_series = KvCacheSeries() if any(r.scheduler.prefix_cache is not None for r in self.replicas) else None
        if self.kv_series is not None:
            for replica in self.replicas:
                if replica.scheduler.prefix_cache is not None:
                    replica.cache_sampler = self.kv_series.sample
        self._allocate_results(len(workload))
        self._init_programs()
        self.front = None  # a semantic cache in front of the fleet (servesim.semantic.front), set by the caller
        self._num_arrived = 0
        self._num_done = 0
        self._next_arrival_s = float("inf")  # time of the next arrival event
        self._chunk_start = 0
        self._chunk: tuple = ([], [], [], [], None, None, None)
        self._init_topology(view_delay_s, hold_short_s, short_prompt_tokens)
        # The largest request the most capacious replica could ever hold, in tokens.
        self._kv_token_capacity = max(s.num_kv_blocks * s.block_size for s in self._setups)
        self._longest_model_len = max(s.max_model_len for s in self._setups)
        # A request whose peak KV tokens stay below _fits_on[r] can be served by replica r;
        # below _fits_everywhere, by any (it passes every check of _rejection).
        self._fits_on = [fit_limit(s) for s in self._setups]
        self._fits_everywhere = min(self._fits_on)

    def _init_topology(self, view_delay_s: float, hold_short_s: float, short_prompt_tokens: int) -> None:
        """Pools, the router's view, LAPS's window, KV links and the P/D controller (docs/cluster.md)."""
        pd = self._pd
        # Pools (disaggregated or offload): replicas that run prompts and replicas that
        # generate; the run-time controller moves replicas between them (in place).
        self._prefill_pool = self.replicas[: self._num_prefill]
        self._decode_pool = self.replicas[self._num_prefill :]
        # Where the router sends arrivals: the prefill pool (disaggregated), the local
        # replicas (prefill offload: long prompts may still go remote), or all.
        self._offload = pd is not None and pd.offload_threshold_tokens > 0
        self._entry = self._decode_pool if self._offload else self._prefill_pool
        # The router's view: the entry replicas themselves, or snapshots refreshed at
        # the first arrival once they are view_delay_s old (see RouterConfig).
        self._view_delay_s = view_delay_s
        self._views: list = self._entry if view_delay_s <= 0.0 else []
        self._views_taken_s = float("-inf")
        # Batching window (LAPS): prompts of at most short_prompt_tokens wait at
        # the router up to hold_short_s, then go to their replica together.
        self._hold_short_s = hold_short_s
        self._short_prompt_tokens = short_prompt_tokens
        self._held: list[list[Sequence]] = [[] for _ in self.replicas]
        # One link per replica: any may run prompts (after a role switch).
        self._links = [] if pd is None else [KvLink(pd.link_bytes_per_s, pd.link_latency_s) for _ in self.replicas]
        self._in_transfer: dict[int, Sequence] = {}  # rid -> prefilled request whose KV is on the way
        # The run-time P/D controller: a replica draining for a role switch, when it is ready.
        self._control = pd is not None and pd.control_interval_s > 0.0 and not self._offload
        self._last_look_s = float("-inf")
        self._switching: tuple | None = None  # (replica, new role)
        self._switch_ready_s = -1.0
        self.role_switches: list[tuple[float, int, int]] = []
        # Picks the least loaded replica of a pool: decode placement, remote prefill,
        # forwarding and the controller's choice of which replica moves.
        self._least_loaded = LeastOutstandingRouter()

    def _make_replica(self, index: int, step_model, fast_path: bool, sample_every_s: float) -> Replica:
        prefill_only = self._pd is not None and self._roles[index] == PREFILL
        setup = self._setups[index]
        if self._paired:
            # The lockstep planner books KV ahead of time, which a second worker on the
            # same cache would invalidate: semi-PD workers plan iteration by iteration.
            kv = self._shared_kv.setdefault(index % self._num_prefill, KVCacheManager(setup.num_kv_blocks, setup.block_size))
            fast_path = False
            scheduler = BatchScheduler(setup.scheduler, kv)
        elif setup.prefix_block_tokens > 0 or setup.entry_cache:
            tiers = setup.make_kv_tiers() if setup.make_kv_tiers is not None else []
            kv = PrefixCachingKVManager(
                setup.num_kv_blocks, setup.block_size, setup.prefix_block_tokens or setup.block_size,
                setup.kv_bytes_per_token, tiers
            )
            scheduler = (LockstepScheduler if fast_path else BatchScheduler)(setup.scheduler, kv)
            if setup.prefix_block_tokens > 0:
                scheduler.prefix_cache = kv
        else:
            scheduler = (LockstepScheduler if fast_path else BatchScheduler)(
                setup.scheduler, KVCacheManager(setup.num_kv_blocks, setup.block_size)
            )
        if setup.make_chunk_cache is not None:
            scheduler.chunk_cache = setup.make_chunk_cache()
        if setup.make_adapters is not None:
            scheduler.adapters = setup.make_adapters(scheduler.kv)
        return Replica(
            index,
            self.loop,
            scheduler,
            step_model,
            self._on_prefilled if prefill_only else self._on_finished,
            fast_path=fast_path,
            horizon_s=self.horizon_s,
            sample_every_s=sample_every_s,
            sampler=self.timeseries.append,
            next_arrival=self._peek_arrival,
            async_scheduling=setup.async_scheduling,
        )

    def _init_programs(self) -> None:
        """Closed-loop workloads (agent programs): a request that follows another is sent
        ``think_s`` after it finishes, not at a time of its own."""
        w = self.workload
        self._closed = w.follows is not None
        self._successor = array("q", [-1]) * len(w)
        self._releases: list[float] = []  # times of the releases scheduled and not yet done (a heap)
        self._arrival = None
        self.pinning = None  # a KvPinning (Continuum), set by the caller
        if self._closed:
            for j, before in enumerate(w.follows.tolist()):
                if before >= 0:
                    self._successor[before] = j
            self._arrival = array("d", w.arrival_s.tolist())

    def _allocate_results(self, n: int) -> None:
        """Result columns as typed arrays (8 bytes or less per value, not a
        Python object each): ten million requests fit in well under 1 GB, and
        numpy views them without a copy at the end."""
        nan = float("nan")
        self._replica = array("q", [-1]) * n
        self._status = array("b", [IN_FLIGHT]) * n
        self._reason = array("b", [0]) * n  # index into REJECT_REASONS
        self._first_sched = array("d", [nan]) * n
        self._first_token = array("d", [nan]) * n
        self._finish = array("d", [nan]) * n
        self._max_itl = array("d", [nan]) * n
        self._preempt = array("q", [0]) * n
        self._generated = array("q", [0]) * n
        self._cached = array("q", [0]) * n

    # ------------------------------------------------------------------ run

    def run(self) -> SimulationOutput:
        if len(self.workload) and self.workload.arrival_s[0] < float("inf"):
            self._next_arrival_s = float(self.workload.arrival_s[0])
            self.loop.schedule(self._next_arrival_s, ARRIVAL, self._on_arrival)
        self.loop.run(until=self.horizon_s)
        self._record_in_flight()
        n = self._num_arrived
        w = self.workload
        if self._closed:
            # Every row that arrived, streamed or sent after its predecessor (not a prefix of rows).
            arrival = np.frombuffer(self._arrival, dtype=np.float64)
            rows = np.flatnonzero(arrival < float("inf"))
            view = lambda column, dtype: np.frombuffer(column, dtype=dtype)[rows]  # noqa: E731
        else:
            arrival = w.arrival_s
            rows = slice(0, n)
            view = lambda column, dtype: np.frombuffer(column, dtype=dtype)[:n]  # noqa: E731
        table = RequestTable(
            request_id=np.arange(len(w), dtype=np.int64)[rows],
            arrival_s=arrival[rows],
            prompt_tokens=w.prompt_tokens[rows],
            output_tokens=w.output_tokens[rows],
            tokens_generated=view(self._generated, np.int64),
            replica=view(self._replica, np.int64),
            status=view(self._status, np.int8),
            reject_reason=np.array(REJECT_REASONS, dtype=object)[view(self._reason, np.int8)],
            first_scheduled_s=view(self._first_sched, np.float64),
            first_token_s=view(self._first_token, np.float64) + self.frontend_latency_s,
            finish_s=view(self._finish, np.float64) + self.frontend_latency_s,
            max_itl_s=view(self._max_itl, np.float64),
            num_preemptions=view(self._preempt, np.int64),
            cached_tokens=view(self._cached, np.int64),
        )
        return SimulationOutput(
            requests=table,
            timeseries=_sorted_by_time(self.timeseries.build()),
            sim_time_s=self.loop.now,
            busy_time_s=np.array([r.busy_time_s for r in self.replicas]),
            num_steps=sum(r.num_steps for r in self.replicas),
            num_events=self.loop.num_events,
            role_switches=list(self.role_switches),
            split_changes=[] if self._semi_control is None else list(self._semi_control.changes),
        )

    # --------------------------------------------------------------- events

    def _on_arrival(self, now: float, _payload: object) -> None:
        i = self._num_arrived
        k = i - self._chunk_start
        if k >= len(self._chunk[0]):
            self._load_chunk(i)
            k = 0
        prompt, output, priority, arrival, session, prefix, chunks = self._chunk
        seq = Sequence(i, now, prompt[k], output[k], priority[k], None if session is None else session[k])
        if prefix is not None:
            seq.prefix = prefix[k]
        if chunks is not None:
            seq.chunks = chunks[k]
        if self._adapter_ids is not None:
            seq.adapter = self._adapter_ids[i]
        if self.front is not None:
            self.front.arrive(seq, now)  # a semantic cache answers it, or passes it on (_admit) after its search
        else:
            self._admit(seq, now)
        self._num_arrived = i + 1
        if k + 1 < len(arrival):
            self._next_arrival_s = arrival[k + 1]
        elif i + 1 < len(self.workload):
            self._next_arrival_s = float(self.workload.arrival_s[i + 1])
        else:
            self._next_arrival_s = float("inf")
        if self._next_arrival_s < float("inf"):  # (closed-loop followers come last, at +inf)
            self.loop.schedule(self._next_arrival_s, ARRIVAL, self._on_arrival)
        if self.progress is not None and (i & 4095) == 0:
            self.progress.update(now, self._num_done)

    def _admit(self, seq: Sequence, now: float) -> None:
        """An arrival reaches the fleet: rejected with a reason, admitted by fleet operations, or sent."""
        i = seq.rid
        reason = self._rejection(seq)
        if reason:
            self._status[i] = REJECTED
            self._reason[i] = REJECT_REASONS.index(reason)
            self._num_done += 1
        elif self.fleet is not None:
            self.fleet.admit(seq, now)
        else:
            self.send(seq, now)

    def send(self, seq: Sequence, now: float) -> None:
        """Route an admitted request to a replica and hand it over (or hold it for LAPS)."""
        r = self._place(seq, now)
        self._replica[seq.rid] = r
        self._dispatch(seq, r, now)

    def arrive(self, seq: Sequence, now: float) -> None:
        """A request from outside the workload arrives at ``now`` (``servesim serve``: a client's
        request): rejected with a reason, held by fleet operations, or routed, as a streamed arrival
        is.  ``seq.rid`` is a workload row that never arrives by itself (its arrival time is never
        streamed: ``run`` is not called); its result columns become the request's.  Call it from
        an ``ARRIVAL`` event at ``now`` so that an iteration starting at that instant sees it."""
        self._admit(seq, now)

    def request_status(self, rid: int) -> tuple[int, str, int]:
        """Request ``rid`` as of now: its status (``FINISHED``, ``REJECTED``, ``IN_FLIGHT`` or
        ``FAILED`` of ``servesim.metrics.records``), why it was rejected or failed ('' otherwise),
        and the replica it was last routed to (-1: none)."""
        return self._status[rid], REJECT_REASONS[self._reason[rid]], self._replica[rid]

    def fail_request(self, seq: Sequence, reason: str) -> None:
        """A request ends unserved after it was admitted (fleet operations: its replica failed)."""
        i = seq.rid
        self._status[i] = FAILED
        self._reason[i] = REJECT_REASONS.index(reason)
        self._store_progress(seq)
        self._num_done += 1

    def _finish_from_cache(self, seq: Sequence, now: float) -> None:
        """A semantic cache answered ``seq`` at ``now``: finished on no replica, its whole answer
        at once (TTFT = latency, TPOT 0); its tokens are the cache's (check_conservation)."""
        i = seq.rid
        self._status[i] = FINISHED
        self._first_token[i] = now
        self._finish[i] = now
        self._generated[i] = seq.max_output
        self._num_done += 1

    def _place(self, seq: Sequence, now: float) -> int:
        """The replica an arriving request goes to: the router's choice among the entry
        replicas (through a snapshot when views may be stale), or, with prefill offload,
        a remote prefill replica for a long prompt while that replica's link has room."""
        if self._control:
            self._steer(now)  # may change the pools (and then drops the snapshot)
        if self._semi_control is not None:
            self._semi_control.look(now, self._prefill_pool, self._decode_pool)
        if self._view_delay_s > 0.0 and now - self._views_taken_s >= self._view_delay_s:
            self._views = [ReplicaSnapshot.of(replica) for replica in self._entry]
            self._views_taken_s = now
        r = self._views[self.router.route(seq, self._views)].index
        if self._hetero and self._pd is None and seq.num_prompt + seq.max_output - 1 >= self._fits_on[r]:
            # The router chose a pool that cannot hold it.  (Disaggregated and offload pools
            # each hold any request of max_model_len: the deployment checks that.)
            r = self._fitting_replica(seq)
        if self._pd is not None and 0 < self._pd.forward_queue_len <= self.replicas[r].num_outstanding:
            # The chosen prefill replica is busy and rejects it: forward to the least loaded one.
            r = self._prefill_pool[self._least_loaded.route(seq, self._prefill_pool)].index
        if self._offload and seq.num_prompt > self._pd.offload_threshold_tokens:
            remote = self._prefill_pool[self._least_loaded.route(seq, self._prefill_pool)].index
            if self._links[remote].backlog_s(now) <= self._pd.max_link_wait_s:
                r = remote
        return r

    def _fitting_replica(self, seq: Sequence) -> int:
        """The least loaded entry replica that can hold ``seq`` (one exists: _rejection checked)."""
        peak = seq.num_prompt + seq.max_output - 1
        fitting = [replica for replica in self._entry if peak < self._fits_on[replica.index]]
        return fitting[self._least_loaded.route(seq, fitting)].index

    def _steer(self, now: float) -> None:
        """The run-time P/D controller, at an arrival: finish a role switch in progress,
        or, at most every control_interval_s, move one replica to the pool under pressure.

        A replica leaves its pool at once (no new work) and joins the other once it has
        drained (nothing outstanding) and then spent switch_s changing role.
        """
        pd = self._pd
        if self._switching is not None:
            replica, role = self._switching
            if self._switch_ready_s < 0.0:
                if replica.num_outstanding == 0 and not self._held[replica.index]:
                    self._switch_ready_s = now + pd.switch_s
            if 0.0 <= self._switch_ready_s <= now:
                self._roles[replica.index] = role
                replica._on_finished = self._on_prefilled if role == PREFILL else self._on_finished
                (self._prefill_pool if role == PREFILL else self._decode_pool).append(replica)
                self._prefill_pool.sort(key=_by_index)
                self._decode_pool.sort(key=_by_index)
                self.role_switches.append((now, replica.index, role))
                self._views_taken_s = float("-inf")
                self._switching = None
                self._switch_ready_s = -1.0
            return
        if now - self._last_look_s < pd.control_interval_s:
            return
        self._last_look_s = now
        prefill, decode = self._prefill_pool, self._decode_pool
        queued = sum(r.num_outstanding for r in prefill) / len(prefill)
        batch = sum(r.num_outstanding for r in decode) / len(decode)
        # Hysteresis: a move must leave the other pool well under its own threshold.
        if queued > pd.prefill_queue_high and len(decode) > 1 and batch * len(decode) / (len(decode) - 1) < pd.decode_batch_high / 2:
            source, role = decode, PREFILL
        elif batch > pd.decode_batch_high and len(prefill) > 1 and queued < pd.prefill_queue_high / 2:
            source, role = prefill, DECODE
        else:
            return
        chosen = source[self._least_loaded.route(None, source)]
        source.remove(chosen)
        self._switching = (chosen, role)
        self._views_taken_s = float("-inf")  # a router's pools are always current; only loads go stale

    def _dispatch(self, seq: Sequence, r: int, now: float) -> None:
        """Hand a placed request to replica ``r``, or hold it for LAPS's batching window."""
        if self._pd is not None and self._roles[r] == PREFILL:
            seq.max_output = 1  # the prefill replica stops after the first token
        if self._hold_short_s > 0.0 and seq.num_prompt <= self._short_prompt_tokens:
            held = self._held[r]
            if not held:
                self.loop.schedule(now + self._hold_short_s, ARRIVAL, self._on_release, r)
            held.append(seq)
        else:
            self.replicas[r].submit(seq, now)

    def _on_release(self, now: float, replica: int) -> None:
        """The batching window of ``replica`` closes: its held requests go to it together."""
        held = self._held[replica]
        self._held[replica] = []
        for seq in held:
            self.replicas[replica].submit(seq, now)

    def _on_prefilled(self, seqs: list[Sequence], now: float) -> None:
        """Prompts done on a prefill replica: send each KV cache to the decode pool
        (a request that wanted one token is done)."""
        pd = self._pd
        done = []
        for seq in seqs:
            wanted = int(self.workload.output_tokens[seq.rid])
            if wanted <= 1:
                done.append(seq)
                continue
            self._in_transfer[seq.rid] = seq
            if self._paired:
                self._on_kv_arrived(now, seq)  # the KV cache stays where it is
                continue
            link = self._links[self._replica[seq.rid]]
            num_bytes = seq.num_prompt * pd.kv_bytes_per_token
            if pd.stream_layers:
                arrives = link.send(now, num_bytes, seq.first_scheduled_s, pd.stream_layers)
            else:
                arrives = link.send(now, num_bytes)
            self.loop.schedule(arrives, ARRIVAL, self._on_kv_arrived, seq)
        if done:
            self._on_finished(done, now)

    def _on_kv_arrived(self, now: float, seq: Sequence) -> None:
        """A prompt's KV cache reached the decode pool: the request joins the least
        loaded decode replica, as if that replica had run the prompt itself."""
        del self._in_transfer[seq.rid]
        wanted = int(self.workload.output_tokens[seq.rid])
        decode = Sequence(seq.rid, seq.arrival_s, seq.num_prompt, wanted, seq.priority, seq.session)
        decode.num_generated = seq.num_generated
        decode.num_computed = seq.num_prompt  # the prompt's KV; the first output token's is computed next
        decode.first_scheduled_s = seq.first_scheduled_s
        decode.first_token_s = seq.first_token_s
        decode.last_token_s = seq.last_token_s
        decode.max_itl_s = seq.max_itl_s
        decode.num_preemptions = seq.num_preemptions
        decode.cached_tokens = seq.cached_tokens  # the prefill replica's prefix-cache hit is the request's
        if self._paired:
            r = self._replica[seq.rid] + self._num_prefill  # the same GPUs' decode worker
        else:
            r = self._decode_pool[self._least_loaded.route(decode, self._decode_pool)].index
        self._replica[seq.rid] = r
        self.replicas[r].submit(decode, now)

    def _on_finished(self, seqs: list[Sequence], now: float) -> None:
        if self._closed:
            self._send_successors(seqs, now)
        if self.front is not None:
            self.front.on_finished(seqs, now)  # their responses enter the semantic cache
        if self._paired and seqs:
            # Their blocks went back to the cache the other worker shares: it may have room now.
            r = self._replica[seqs[0].rid]
            self.replicas[r - self._num_prefill if r >= self._num_prefill else r + self._num_prefill].nudge(now)
        for seq in seqs:
            i = seq.rid
            self._status[i] = FINISHED
            # A sequence finishing inside a decode stretch ended before the
            # stretch did: its last token's time is its finish time.
            self._finish[i] = seq.last_token_s
            self._store_progress(seq)
        self._num_done += len(seqs)
        if self.fleet is not None:
            self.fleet.on_finished(seqs, now)

    # -------------------------------------------------------- agent programs

    def _send_successors(self, seqs: list[Sequence], now: float) -> None:
        """Schedule the next request of each finished request's program, ``think_s`` later
        (pinning the finished request's KV cache for it, when a pinning policy is set)."""
        think = self.workload.think_s
        for seq in seqs:
            j = self._successor[seq.rid]
            if j < 0:
                continue
            at = now + self.frontend_latency_s + float(think[j])  # the client sees the last token, then sends
            heapq.heappush(self._releases, at)
            self.loop.schedule(at, ARRIVAL, self._on_next_call, j)
            if self.pinning is not None:
                replica = self.replicas[self._replica[seq.rid]]
                self.pinning.pin(seq, replica, now, self.loop)

    def _on_next_call(self, now: float, j: int) -> None:
        """Request ``j`` of a program is sent: its predecessor finished ``think_s`` ago."""
        heapq.heappop(self._releases)
        w = self.workload
        seq = Sequence(j, now, int(w.prompt_tokens[j]), int(w.output_tokens[j]), int(w.priority[j]),
                       None if w.session_id is None else _session_key(w.session_id[j]))
        if w.prefix_block_ids is not None:
            seq.prefix = tuple(w.prefix_block_ids[j])
        if self._adapter_ids is not None:
            seq.adapter = self._adapter_ids[j]
        self._arrival[j] = now
        if self.pinning is not None:
            self.pinning.observe(seq.session, float(w.think_s[j]))
        self._admit(seq, now)

    # -------------------------------------------------------------- helpers

    def _peek_arrival(self) -> float:
        """When the next request arrives (inf when none is left): the next of the stream, or an
        agent program's next request, whichever is sooner."""
        if self._releases and self._releases[0] < self._next_arrival_s:
            return self._releases[0]
        return self._next_arrival_s

    def _rejection(self, seq: Sequence) -> str:
        """Why a request can never be served by a replica, or '' if it can."""
        peak = seq.num_prompt + seq.max_output - 1  # tokens in KV at its last iteration
        if peak < self._fits_everywhere:
            return ""
        if peak + 1 > self._longest_model_len:
            return "exceeds_max_model_len"
        if peak > self._kv_token_capacity:
            return "exceeds_kv_capacity"
        sched = self.setup.scheduler
        if not sched.chunked_prefill and peak > sched.max_num_batched_tokens:
            # Without chunking a recompute after preemption must fit one iteration.
            return "exceeds_token_budget"
        if peak >= max(self._fits_on):
            # Heterogeneous pools: each limit is met by some pool, but no pool meets all.
            return "fits_no_pool"
        return ""

    def _store_progress(self, seq: Sequence) -> None:
        i = seq.rid
        self._generated[i] = seq.num_generated
        self._preempt[i] = seq.num_preemptions
        self._cached[i] = seq.cached_tokens
        if seq.first_scheduled_s >= 0.0:
            self._first_sched[i] = seq.first_scheduled_s
        if seq.first_token_s >= 0.0:
            self._first_token[i] = seq.first_token_s
        if seq.num_generated >= 2:
            self._max_itl[i] = seq.max_itl_s

    def _record_in_flight(self) -> None:
        for replica in self.replicas:
            replica.scheduler.materialize()
            for seq in list(replica.scheduler.running) + list(replica.scheduler.waiting) + replica.held:
                self._store_progress(seq)
        for seq in self._in_transfer.values():
            self._store_progress(seq)
        if self.fleet is not None:
            for seq in self.fleet.held():
                self._store_progress(seq)

    def _load_chunk(self, start: int) -> None:
        w = self.workload
        stop = min(start + _CHUNK, len(w))
        self._chunk_start = start
        self._chunk = (
            w.prompt_tokens[start:stop].tolist(),
            w.output_tokens[start:stop].tolist(),
            w.priority[start:stop].tolist(),
            w.arrival_s[start:stop].tolist(),
            None if w.session_id is None else [_session_key(s) for s in w.session_id[start:stop]],
            None if w.prefix_block_ids is None else [tuple(ids) for ids in w.prefix_block_ids[start:stop]],
            None if w.chunk_ids is None else [tuple(ids) for ids in w.chunk_ids[start:stop]],
        )


def fit_limit(setup: ReplicaSetup) -> int:
    """Requests whose peak KV tokens (prompt + output - 1) stay below this can be served by a
    replica built from ``setup``: within its context, its KV cache and, without chunked
    prefill, one iteration's token budget."""
    limits = [setup.max_model_len - 1, setup.num_kv_blocks * setup.block_size]
    if not setup.scheduler.chunked_prefill:
        limits.append(setup.scheduler.max_num_batched_tokens)
    return min(limits) + 1


def _by_index(replica: Replica) -> int:
    return replica.index


def _session_key(session: object) -> str | None:
    """A session id as routers see it: a string, or None when the request has none."""
    if session is None or (isinstance(session, float) and session != session):  # None or NaN
        return None
    return str(session)


def _sorted_by_time(series: TimeSeries) -> TimeSeries:
    """Samples ordered by (time, replica): replicas record stretch samples late."""
    order = np.lexsort((series.replica, series.time_s))
    return TimeSeries(**{name: col[order] for name, col in series.columns().items()})
