"""The replica batch scheduler: continuous batching under a token budget.

One call to ``schedule`` decides one iteration, the way vLLM's v1 scheduler
does:

1. Running sequences, in order, each take the tokens they still need (a
   decode takes one; a partially computed prompt takes what the budget
   allows).  When KV blocks run out, the queue policy names a victim that is
   preempted by recompute: its blocks are freed, its progress is reset and it
   goes back to the waiting queue.
2. If nothing was preempted, waiting sequences are admitted in queue order
   while the token budget, ``max_num_seqs`` and free KV blocks allow;
   with chunked prefill a prompt larger than the remaining budget is split.

The scheduler decides and keeps counters; it never measures time.  The
replica asks the performance model for the step's duration and reports the
step's end through ``on_step_done``.  This is the reference planner: plain,
one iteration at a time.  ``LockstepScheduler`` makes the same decisions
faster and foretells runs of decode iterations (``decode_run``).
"""

from __future__ import annotations

from bisect import bisect_left

from servesim.kvcache.manager import KVCacheManager
from servesim.perf.batch_shape import BatchShape
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.queues import make_queue
from servesim.scheduler.sequence import Sequence


class BatchPlan:
    """What one iteration computes: ``num_new[i]`` tokens of ``seqs[i]``.

    ``preempted`` lists sequences preempted while planning; ``shape`` is the
    batch summary the performance model prices; ``is_pure_decode`` is True
    when every scheduled sequence decodes exactly one token.  ``num_group``
    counts further sequences that decode one token each without being listed
    (the lockstep decode group of ``LockstepScheduler``; 0 here).
    """

    __slots__ = ("seqs", "num_new", "preempted", "shape", "is_pure_decode", "num_group")

    def __init__(
        self,
        seqs: list[Sequence],
        num_new: list[int],
        preempted: list[Sequence],
        shape: BatchShape,
        is_pure_decode: bool,
        num_group: int = 0,
    ) -> None:
        self.seqs = seqs
        self.num_new = num_new
        self.preempted = preempted
        self.shape = shape
        self.is_pure_decode = is_pure_decode
        self.num_group = num_group

    @property
    def num_seqs(self) -> int:
        """Sequences in the iteration."""
        return len(self.seqs) + self.num_group


# What booking an iteration did for one sequence (BatchScheduler._book).
NO_TOKEN, TOKEN, FINISHED_TOKEN = 0, 1, 2


class DecodeRun:
    """A run of pure-decode iterations whose course the scheduler can foretell.

    It lasts at most ``max_steps`` iterations.  Iteration 0 runs ``batch0``
    sequences reading ``kv0`` KV tokens (each sequence's context including
    its new token).  ``finish_steps`` lists, in order, the iteration at whose
    end each finishing sequence (``finish_seqs``) samples its last token, and
    ``finish_kv`` the KV tokens that sequence read in iteration 0.  Only
    finishing sequences change the batch inside a run, so iteration ``j``
    runs ``batch(j) = batch0 - #(finish_steps < j)`` sequences reading
    ``kv0 - sum(finish_kv of those) + batch(j) * j`` tokens.
    """

    __slots__ = ("max_steps", "batch0", "kv0", "finish_steps", "finish_seqs", "finish_kv")

    def __init__(
        self,
        max_steps: int,
        batch0: int,
        kv0: int,
        finish_steps: list[int],
        finish_seqs: list[Sequence],
        finish_kv: list[int],
    ) -> None:
        self.max_steps = max_steps
        self.batch0 = batch0
        self.kv0 = kv0
        self.finish_steps = finish_steps
        self.finish_seqs = finish_seqs
        self.finish_kv = finish_kv

    def batch(self, step: int) -> int:
        """Sequences running in iteration ``step``."""
        return self.batch0 - bisect_left(self.finish_steps, step)

    def tokens_through(self, steps: int) -> int:
        """Output tokens the first ``steps`` iterations sample (one per running sequence each)."""
        total = self.batch0 * steps
        for f in self.finish_steps:
            if f >= steps:
                break
            total -= steps - 1 - f
        return total


class BatchScheduler:
    """Waiting queue + running batch of one replica, over a ``KVCacheManager``."""

    def __init__(self, config: SchedulerConfig, kv: KVCacheManager) -> None:
        self.config = config
        self.kv = kv
        self.waiting = make_queue(config)
        self.running: list[Sequence] = []
        self._max_tokens = config.max_num_batched_tokens
        self._max_seqs = config.max_num_seqs
        self._chunked = config.chunked_prefill
        self.num_preemptions = 0
        self.num_tokens_produced = 0  # output tokens sampled, all sequences (for the books)
        # The KV manager again when it caches prefixes (a PrefixCachingKVManager; set by the
        # replica's owner): admission shares cached prefix blocks, a computed prompt files its own.
        self.prefix_cache = None
        self.chunk_cache = None  # a ChunkCache (RAG chunk reuse), set by the replica's owner
        self.adapters = None  # LoRA adapters in GPU memory (servesim.kvcache.adapters), set by the owner

    # ------------------------------------------------------------------ public

    def add(self, seq: Sequence) -> None:
        """Queue a newly arrived sequence."""
        self.waiting.push(seq)

    def take_load_stall_s(self, compute_s: float) -> float:
        """Time the step just planned (``compute_s`` of compute) waits for the KV its admissions
        brought from lower tiers or a chunk cache."""
        stall = 0.0
        if self.prefix_cache is not None:
            stall += self.prefix_cache.take_stall_s(compute_s)
        if self.chunk_cache is not None:
            stall += self.chunk_cache.take_stall_s()
        if self.adapters is not None:
            stall += self.adapters.take_stall_s()
        return stall

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def schedule(self, now: float) -> BatchPlan | None:
        """Plan the next iteration starting at ``now``; None when there is nothing to run."""
        seqs: list[Sequence] = []
        num_new: list[int] = []
        preempted: list[Sequence] = []
        budget = self._schedule_running(seqs, num_new, preempted, self._max_tokens)
        if not preempted:
            self._admit_waiting(now, seqs, num_new, budget)
        if not seqs:
            return None
        return make_plan(seqs, num_new, preempted)

    def on_step_done(self, plan: BatchPlan, end_s: float) -> list[Sequence]:
        """Apply a finished iteration ending at ``end_s``; returns the sequences that finished.

        Each scheduled sequence gains ``num_new`` computed tokens; one whose
        computed tokens reach its token count samples an output token at
        ``end_s``.  Finished sequences free their blocks and leave the batch.
        """
        finished: list[Sequence] = []
        seqs, num_new = plan.seqs, plan.num_new
        for i in range(len(seqs)):  # an index loop, not zip: a C loop when compiled
            seq = seqs[i]
            if self._book(seq, num_new[i], end_s) == FINISHED_TOKEN:
                finished.append(seq)
        self._retire(finished)
        return finished

    def _book(self, seq: Sequence, num_new: int, end_s: float) -> int:
        """Add ``num_new`` computed tokens to ``seq``; if it caught up, sample a token at ``end_s``.

        Returns ``NO_TOKEN``, ``TOKEN`` or ``FINISHED_TOKEN`` (the token was its last).
        """
        seq.num_computed += num_new
        if seq.num_computed != seq.num_prompt + seq.num_generated:
            return NO_TOKEN
        seq.num_generated += 1
        self.num_tokens_produced += 1
        if seq.first_token_s < 0.0:
            seq.first_token_s = end_s
            if self.prefix_cache is not None and seq.prefix:
                self.prefix_cache.register_prefix(seq.rid, seq.prefix, seq.num_prompt)
            elif self.chunk_cache is not None and seq.chunks:
                self.chunk_cache.insert(seq.chunks)
        else:
            gap = end_s - seq.last_token_s
            if gap > seq.max_itl_s:
                seq.max_itl_s = gap
        seq.last_token_s = end_s
        return FINISHED_TOKEN if seq.num_generated >= seq.max_output else TOKEN

    # ----------------------------------------------------- decode runs
    # The reference planner never looks ahead: every decode run it reports
    # is one iteration, so the replica books iterations one by one.
    # ``LockstepScheduler`` overrides these three to foretell longer runs.

    def decode_run(self, plan: BatchPlan, max_steps: int) -> DecodeRun:
        """The single iteration ``plan`` (see ``DecodeRun``)."""
        finishing = [s for s in plan.seqs if s.max_output - s.num_generated == 1]
        return DecodeRun(
            1,
            len(plan.seqs),
            plan.shape.decode_kv_tokens,
            [0] * len(finishing),
            finishing,
            [s.num_computed + 1 for s in finishing],
        )

    def apply_decode_run(self, plan: BatchPlan, run: DecodeRun, end_s: list[float]) -> list[Sequence]:
        """Book the first ``len(end_s)`` iterations of ``run``; returns the sequences that finished."""
        if len(end_s) != 1:
            raise AssertionError(f"the reference scheduler books one iteration at a time, not {len(end_s)}")
        return self.on_step_done(plan, end_s[0])

    def run_blocks_used(self, plan: BatchPlan, run: DecodeRun, num_steps: int) -> int:
        """KV blocks in use once iteration ``num_steps - 1`` of ``run`` is planned."""
        if num_steps != 1:
            raise AssertionError("the reference scheduler's runs have one iteration")
        return self.kv.num_used_blocks

    def materialize(self) -> None:
        """Bring every sequence's counters and times up to date (they always are here)."""

    # ---------------------------------------------------------------- private

    def _schedule_running(
        self, seqs: list[Sequence], num_new: list[int], preempted: list[Sequence], budget: int
    ) -> int:
        """Give each running sequence its tokens, preempting on KV shortage; returns the budget left."""
        running = self.running
        kv = self.kv
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            n = seq.num_prompt + seq.num_generated - seq.num_computed
            if n > budget:
                n = budget
            while not kv.allocate_slots(seq.rid, seq.num_computed + n):
                v = self.waiting.victim_index(running)
                victim = running.pop(v)
                self._preempt(victim)
                preempted.append(victim)
                if v < i:
                    # The victim was already planned this iteration: take it back.
                    k = next(j for j, s in enumerate(seqs) if s is victim)
                    budget += num_new[k]
                    del seqs[k], num_new[k]
                    i -= 1
                if victim is seq:
                    break
            else:
                seqs.append(seq)
                num_new.append(n)
                budget -= n
                i += 1
        return budget

    def _admit_waiting(self, now: float, seqs: list[Sequence], num_new: list[int], budget: int) -> None:
        """Move waiting sequences into the batch while budget, seat and blocks allow."""
        waiting = self.waiting
        running = self.running
        kv = self.kv
        cache = self.prefix_cache
        while budget > 0 and len(waiting) and len(running) < self._max_seqs:
            seq = waiting.peek()
            if self.adapters is not None and seq.adapter >= 0 and not self.adapters.acquire(seq.rid, seq.adapter):
                break  # its LoRA adapter finds no room in GPU memory yet
            hit = 0
            attached = False
            reused = False
            if cache is not None and seq.prefix and seq.num_computed == 0:
                # Cached leading prefix blocks count as computed; at least one prompt
                # token is left to compute, to sample the first output token.
                hit = cache.attach_prefix(seq.rid, seq.prefix)
                attached = True
                if hit > seq.num_prompt - 1:
                    hit = seq.num_prompt - 1
                seq.num_computed = hit
            elif self.chunk_cache is not None and seq.chunks and seq.num_computed == 0:
                # Cached RAG chunks count as computed, but for their recomputed share.
                hit = self.chunk_cache.reusable_tokens(seq.chunks)
                reused = True
                if hit > seq.num_prompt - 1:
                    hit = seq.num_prompt - 1
                seq.num_computed = hit
            n = seq.num_prompt + seq.num_generated - seq.num_computed
            if n > budget:
                n = budget if self._chunked else 0
            if n == 0 or not kv.allocate_slots(seq.rid, seq.num_computed + n):
                if attached or reused:
                    kv.free(seq.rid)  # let go of the shared blocks until it is admitted
                    seq.num_computed = 0
                if self.adapters is not None:
                    self.adapters.release(seq.rid)
                break
            waiting.pop()
            running.append(seq)
            seqs.append(seq)
            num_new.append(n)
            budget -= n
            if attached:
                cache.commit_lookup(seq.rid, seq.first_scheduled_s < 0.0, hit)
            elif reused:
                self.chunk_cache.reuse(seq.chunks, seq.first_scheduled_s < 0.0, hit)
            if seq.first_scheduled_s < 0.0:
                seq.first_scheduled_s = now
                seq.cached_tokens = hit

    def _preempt(self, seq: Sequence) -> None:
        """Preempt by recompute: drop the KV cache and requeue."""
        self.kv.free(seq.rid)
        if self.adapters is not None:
            self.adapters.release(seq.rid)
        seq.num_computed = 0
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.push_preempted(seq)

    def _retire(self, finished: list[Sequence]) -> None:
        if not finished:
            return
        for seq in finished:
            self.kv.free(seq.rid)
            if self.adapters is not None:
                self.adapters.release(seq.rid)
        self.running = [s for s in self.running if s.num_generated < s.max_output]


def make_plan(
    seqs: list[Sequence],
    num_new: list[int],
    preempted: list[Sequence],
    group: int = 0,
    group_kv_tokens: int = 0,
) -> BatchPlan:
    """Summarise the batch into the shape the performance model prices.

    ``group`` more sequences decode one token each without being listed,
    reading ``group_kv_tokens`` KV tokens together (the lockstep group).
    """
    num_tokens = group
    num_prefill = 0
    pairs = 0
    prefill_kv = 0
    decode_kv = group_kv_tokens
    for i in range(len(seqs)):  # an index loop, not zip: a C loop when compiled
        seq = seqs[i]
        q = num_new[i]
        c = seq.num_computed
        num_tokens += q
        if q == 1 and seq.num_generated and c + 1 == seq.num_prompt + seq.num_generated:
            decode_kv += c + 1
        else:
            num_prefill += 1
            pairs += q * c + q * (q + 1) // 2
            prefill_kv += c + q
    num_seqs = len(seqs) + group
    shape = BatchShape(num_tokens, num_seqs, num_prefill, pairs, prefill_kv, num_seqs - num_prefill, decode_kv)
    return BatchPlan(seqs, num_new, preempted, shape, num_prefill == 0, group)
