"""``LockstepScheduler``: the same decisions as ``BatchScheduler``, without
touching every decoding sequence at every event.

Why it works.  Every running sequence that is past its prompt decodes one
token in every iteration: running sequences are served in admission order,
each decode costs one token of a budget of at least ``max_num_seqs``, and at
most one sequence, the last admitted, can still be part-way through its
prompt.  So the decoding sequences advance in lockstep, and their counters
follow from one replica-wide step index:

    computed(g)  = computed0  + (g - join)
    generated(g) = generated0 + (g - join)

for a sequence that joined the *decode group* at step ``join``.  The
scheduler keeps group aggregates (size, total context), a sorted list of
when each member finishes, and when each needs its next KV block: every
``block_size`` steps, so members sit in ``block_size`` buckets by the phase
of that step.  Its longest inter-token gap is the largest step gap since it joined,
read from a ``SuffixMax`` of step gaps.  Planning, booking an iteration and
booking a decode stretch then cost O(log n) per finishing sequence and per
block boundary, not O(batch).

When anything would make the members diverge (KV blocks short, so some
sequence must be preempted), the group is *materialised* (every member's
counters are written back) and the step is planned by ``BatchScheduler``'s
own code; the decoders rejoin the group after it.  Tests require identical
per-request results to ``BatchScheduler`` stepping one iteration at a time.
"""

from __future__ import annotations

import sys
from bisect import bisect_right, insort

from servesim.kvcache.manager import KVCacheManager
from servesim.scheduler.batch_scheduler import FINISHED_TOKEN, TOKEN, BatchPlan, BatchScheduler, DecodeRun, make_plan
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.sequence import Sequence
from servesim.scheduler.suffix_max import SuffixMax

# Prune the gap log this often (pushes), keeping what members may still ask.
_PRUNE_EVERY = 4096


class LockstepScheduler(BatchScheduler):
    """Continuous batching with the decoding sequences kept as one lockstep group."""

    def __init__(self, config: SchedulerConfig, kv: KVCacheManager) -> None:
        super().__init__(config, kv)
        self.step_index = 0  # iterations applied so far
        self._members: dict[int, Sequence] = {}  # rid -> member, in join order
        self._context = 0  # sum of members' computed tokens at step_index
        # (last step, rid, epoch, seq) of every member, sorted: who finishes when.
        self._finish_order: list[tuple[int, int, int, Sequence]] = []
        self._block = kv.block_size
        # Bucket p: (epoch, member) for members whose group_next_block % block_size == p.
        self._phases: list[list[tuple[int, Sequence]]] = [[] for _ in range(kv.block_size)]
        self._gaps = SuffixMax()  # step index -> gap between that step's end and the previous one's
        self._last_end_s = 0.0
        self._pushes = 0

    # ------------------------------------------------------------ planning

    def schedule(self, now: float) -> BatchPlan | None:
        members = self._members
        running = self.running
        tail = running[len(members):] if len(running) > len(members) else ()
        budget = self._max_tokens - len(members)
        due = self._due_at(self.step_index)
        kv = self.kv
        blocks = len(due)
        tail_seqs: list[Sequence] = []
        tail_new: list[int] = []
        for seq in tail:
            if budget <= 0:
                break
            n = seq.num_prompt + seq.num_generated - seq.num_computed
            if n > budget:
                n = budget
            tail_seqs.append(seq)
            tail_new.append(n)
            budget -= n
            blocks += kv.blocks_for(seq.num_computed + n) - kv.num_blocks_of(seq.rid)
        if blocks > kv.num_free_blocks or _any_member(tail):
            # Some sequence must be preempted (or members are not the head of
            # the running list): plan this iteration the reference way.
            self.materialize()
            return BatchScheduler.schedule(self, now)
        for seq in due:
            self._grant_block(seq)
        # Index loops, not zip: the compiled core turns them into C loops.
        for i in range(len(tail_seqs)):
            seq = tail_seqs[i]
            kv.allocate_slots(seq.rid, seq.num_computed + tail_new[i])
        if len(self.waiting):
            self._admit_waiting(now, tail_seqs, tail_new, budget)
        if not tail_seqs and not members:
            return None
        group = len(members)
        return make_plan(tail_seqs, tail_new, [], group, self._context + group)

    # ------------------------------------------------------------ booking

    def on_step_done(self, plan: BatchPlan, end_s: float) -> list[Sequence]:
        g = self.step_index
        self._push_gap(g, end_s - self._last_end_s)
        self._last_end_s = end_s
        self.step_index = g + 1
        self._context += plan.num_group
        self.num_tokens_produced += plan.num_group
        finished = self._pop_finished(g)
        seqs, num_new = plan.seqs, plan.num_new
        for i in range(len(seqs)):
            seq = seqs[i]
            booked = self._book(seq, num_new[i], end_s)
            if booked == FINISHED_TOKEN:
                finished.append(seq)
            elif booked == TOKEN:
                self._join(seq)
        self._retire(finished)
        return finished

    def decode_run(self, plan: BatchPlan, max_steps: int) -> DecodeRun:
        """The next iterations of a pure group plan: members finish inside the run.

        With nobody waiting the run continues past finishing members (the
        batch shrinks; nothing else can change it before an arrival, which
        the replica turns into a cut).  With requests waiting it stops at
        the first finish, after which one of them may be admitted.  It also
        stops before the free KV blocks could not cover the members' growth.
        """
        shape = plan.shape
        if max_steps <= 1 or plan.seqs or plan.preempted or plan.num_group != len(self.running):
            seqs = [entry[3] for entry in self._finishing_through(self.step_index)] if plan.num_group else []
            return DecodeRun(
                1, shape.num_decode_seqs, shape.decode_kv_tokens, [0] * len(seqs), seqs, self._kv_now(seqs)
            )
        g = self.step_index
        finishing = self._finishing_through(g + max_steps - 1)
        if len(self.waiting):
            cap = finishing[0][0] - g + 1 if finishing else max_steps
        elif len(finishing) == len(self._members):
            cap = finishing[-1][0] - g + 1  # everyone is done by then
        else:
            cap = max_steps
        steps = self._kv_limit(min(cap, max_steps))
        seqs = []
        finish_steps = []
        for entry in finishing:  # in step order
            step = entry[0]
            if step >= g + steps:
                break
            seqs.append(entry[3])
            finish_steps.append(step - g)
        return DecodeRun(
            steps, shape.num_decode_seqs, shape.decode_kv_tokens, finish_steps, seqs, self._kv_now(seqs)
        )

    def _kv_now(self, seqs: list[Sequence]) -> list[int]:
        """KV tokens each member reads in the current step (its context and new token)."""
        g = self.step_index
        kv = []
        for seq in seqs:
            kv.append(seq.group_computed0 + (g - seq.group_join) + 1)
        return kv

    def _finishing_through(self, last_step: int) -> list[tuple[int, int, int, Sequence]]:
        """The valid entries ``(finish step, rid, epoch, member)`` up to ``last_step``, in order."""
        order = self._finish_order
        found = []
        for i in range(bisect_right(order, (last_step, sys.maxsize))):
            entry = order[i]
            seq = entry[3]
            if entry[2] == seq.group_epoch and seq.group_join >= 0:
                found.append(entry)
        return found

    def _kv_limit(self, cap: int) -> int:
        """Largest run length <= ``cap`` whose members' new blocks fit in the free blocks."""
        if cap <= 1:
            return cap
        g = self.step_index
        free = self.kv.num_free_blocks
        if free >= len(self._members) * (-(-cap // self.kv.block_size)):
            return cap
        if self._blocks_needed(g + 1, g + cap - 1) <= free:
            return cap
        lo, hi = 1, cap
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._blocks_needed(g + 1, g + mid - 1) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def apply_decode_run(self, plan: BatchPlan, run: DecodeRun, end_s: list[float]) -> list[Sequence]:
        steps = len(end_s)
        if plan.seqs:
            # A plan with listed sequences (planned the reference way, or
            # with a prompt in it) never stretches: book its one iteration.
            return self.on_step_done(plan, end_s[0])
        g = self.step_index
        last = g + steps - 1
        self._grant_due_through(last)
        previous_end = self._last_end_s
        self._last_end_s = end_s[-1]
        self.step_index = g + steps
        self._context += run.batch0 * steps  # as if every member stayed; leavers correct it
        self.num_tokens_produced += run.tokens_through(steps)
        finished: list[Sequence] = []
        largest = _running_largest_gap(previous_end, end_s)
        finish_steps, finish_seqs = run.finish_steps, run.finish_seqs
        for i in range(len(finish_steps)):
            j = finish_steps[i]
            if j >= steps:
                break
            seq = finish_seqs[i]
            self._leave(seq, at_step=g + j + 1, last_end_s=end_s[j], run_gap=largest[j])
            finished.append(seq)
        # Members joined at run starts only, so one gap entry (the run's
        # largest) at its first step answers every later query.
        self._push_gap(g, largest[-1])
        self._retire(finished)
        return finished

    def run_blocks_used(self, plan: BatchPlan, run: DecodeRun, num_steps: int) -> int:
        """KV blocks in use once iteration ``num_steps - 1`` of ``run`` is planned (members that
        finished before it have freed theirs)."""
        step = self.step_index + num_steps - 1
        block = self.kv.block_size
        used = self.kv.num_used_blocks
        done: list[int] = []
        for bucket in self._phases:
            for epoch, seq in bucket:
                if epoch != seq.group_epoch or seq.group_join < 0:
                    continue  # left the group
                if _finish_step(seq) < step:
                    # Finished (and freed) by then; the blocks it would have been
                    # granted before finishing are not in the pool's count yet.
                    done.append(seq.rid)
                elif seq.group_next_block <= step:
                    used += (step - seq.group_next_block) // block + 1
        if done:
            used -= self.kv.blocks_released_by(done)
        return used

    # ------------------------------------------------------- group upkeep

    def materialize(self) -> None:
        """Write every member's counters and times back and dissolve the group."""
        for seq in list(self._members.values()):
            self._leave(seq)
        for bucket in self._phases:
            bucket.clear()

    def _join(self, seq: Sequence) -> None:
        """``seq`` (just sampled a token, not finished) decodes in lockstep from the next step."""
        join = self.step_index
        seq.group_join = join
        seq.group_generated0 = seq.num_generated
        seq.group_computed0 = seq.num_computed
        epoch = seq.group_epoch
        self._members[seq.rid] = seq
        self._context += seq.num_computed
        last_step = join + seq.max_output - seq.num_generated - 1
        # (last_step, rid) is unique among members, so insort never compares sequences.
        insort(self._finish_order, (last_step, seq.rid, epoch, seq))
        # Its blocks hold num_computed tokens with room to spare for fewer than
        # block_size more, so its first need lies within block_size steps.
        need = join + self.kv.num_blocks_of(seq.rid) * self._block - seq.num_computed
        seq.group_next_block = need
        self._phases[need % self._block].append((epoch, seq))

    def _leave(
        self, seq: Sequence, at_step: int | None = None, last_end_s: float | None = None, run_gap: float = 0.0
    ) -> None:
        """Materialise a member's counters and drop it from the group.

        By default as of ``step_index``; a member finishing inside a decode run
        leaves as of the step after its last (``at_step``), with that step's
        end (``last_end_s``) and the run's largest gap up to it (``run_gap``).
        """
        g = self.step_index
        at = g if at_step is None else at_step
        done = at - seq.group_join
        seq.num_computed = seq.group_computed0 + done
        seq.num_generated = seq.group_generated0 + done
        if done > 0:
            seq.last_token_s = self._last_end_s if last_end_s is None else last_end_s
            gap = self._gaps.max_from(seq.group_join)
            if gap is not None and gap > seq.max_itl_s:
                seq.max_itl_s = gap
            if run_gap > seq.max_itl_s:
                seq.max_itl_s = run_gap
        self._context -= seq.group_computed0 + (g - seq.group_join)
        del self._members[seq.rid]
        seq.group_join = -1
        seq.group_epoch += 1

    def _pop_finished(self, last_step: int) -> list[Sequence]:
        """Members whose last token came at or before step ``last_step``, materialised."""
        order = self._finish_order
        finished = []
        count = bisect_right(order, (last_step, sys.maxsize))
        for i in range(count):
            entry = order[i]
            seq = entry[3]
            # Entries of members that left the group early are dropped here too.
            if entry[2] == seq.group_epoch and seq.group_join >= 0:
                self._leave(seq)
                finished.append(seq)
        del order[:count]
        return finished

    # ------------------------------------------------- block boundaries
    # A member computes one token per step, so it needs a new KV block every
    # block_size steps, from group_next_block on.  Bucket p of _phases holds
    # the members whose group_next_block % block_size == p: the members due
    # at step s are in bucket s % block_size, and a run of fewer than
    # block_size steps reads only the buckets of its steps.

    def _live(self, phase: int) -> list[Sequence]:
        """The members in bucket ``phase``; entries of members that left are dropped."""
        bucket = self._phases[phase]
        live = []
        for epoch, seq in bucket:
            if epoch == seq.group_epoch and seq.group_join >= 0:
                live.append(seq)
        if len(live) < len(bucket):
            self._phases[phase] = [(seq.group_epoch, seq) for seq in live]
        return live

    def _due_at(self, step: int) -> list[Sequence]:
        """The members whose next block is due at ``step`` (every earlier one was granted)."""
        due = []
        for seq in self._live(step % self._block):
            if seq.group_next_block == step:
                due.append(seq)
            elif seq.group_next_block < step:
                raise AssertionError(f"lockstep member {seq!r} missed its block at step {seq.group_next_block}")
        return due

    def _grant_block(self, seq: Sequence) -> None:
        """Give a member its next block; the one after is due ``block_size`` steps later."""
        if not self.kv.append_block(seq.rid):
            raise AssertionError(f"lockstep group ran out of KV blocks for {seq!r}")
        seq.group_next_block += self._block

    def _grant_due_through(self, last_step: int) -> None:
        """Grant every block the members need after ``step_index`` up to step ``last_step``
        (a member may need several; none after its last step)."""
        first = self.step_index + 1
        if last_step < first:
            return
        block = self._block
        kv = self.kv
        phases = range(first, last_step + 1) if last_step - first < block else range(block)
        for p in phases:
            for epoch, seq in self._phases[p % block]:
                if epoch != seq.group_epoch or seq.group_join < 0:
                    continue  # left the group (dropped at the bucket's next _live)
                end = _finish_step(seq)
                if last_step < end:
                    end = last_step
                while seq.group_next_block <= end:
                    if not kv.append_block(seq.rid):
                        raise AssertionError(f"lockstep group ran out of KV blocks for {seq!r}")
                    seq.group_next_block += block

    def _blocks_needed(self, first_step: int, last_step: int) -> int:
        """Blocks the members need for steps ``first_step..last_step`` (beyond those held)."""
        if last_step < first_step:
            return 0
        block = self._block
        total = 0
        for bucket in self._phases:
            # Every due need was granted, so pending needs lie at or after first_step.
            for epoch, seq in bucket:
                if epoch != seq.group_epoch or seq.group_join < 0:
                    continue  # left the group
                end = _finish_step(seq)
                end = last_step if last_step < end else end
                if seq.group_next_block <= end:
                    total += (end - seq.group_next_block) // block + 1
        return total

    def _push_gap(self, step: int, gap: float) -> None:
        self._gaps.push(step, gap)
        self._pushes += 1
        if self._pushes % _PRUNE_EVERY == 0 and self._members:
            self._gaps.forget_before(_earliest_join(self._members.values()))

    def _retire(self, finished: list[Sequence]) -> None:
        if not finished:
            return
        for seq in finished:
            self.kv.free(seq.rid)
        running = self.running
        if len(finished) == 1:
            # By identity: list.remove would call == on every sequence before it.
            gone = finished[0]
            for i in range(len(running)):
                if running[i] is gone:
                    del running[i]
                    break
        else:
            gone_ids = {id(s) for s in finished}
            self.running = [s for s in running if id(s) not in gone_ids]

    def _preempt(self, seq: Sequence) -> None:
        if seq.group_join >= 0:
            self._leave(seq)
        super()._preempt(seq)


def _running_largest_gap(previous_end_s: float, end_s) -> list[float]:
    """For each iteration, the largest gap between consecutive ends so far."""
    out = []
    largest = end_s[0] - previous_end_s
    prev = end_s[0]
    out.append(largest)
    for end in end_s[1:]:
        gap = end - prev
        if gap > largest:
            largest = gap
        out.append(largest)
        prev = end
    return out


def _any_member(seqs) -> bool:
    """True when one of ``seqs`` is in the lockstep group."""
    for seq in seqs:
        if seq.group_join >= 0:
            return True
    return False


def _earliest_join(members) -> int:
    """The smallest join step of the (non-empty) ``members``."""
    return min([seq.group_join for seq in members])


def _finish_step(seq: Sequence) -> int:
    """Step index of a member's last token."""
    return seq.group_join + seq.max_output - seq.group_generated0 - 1
