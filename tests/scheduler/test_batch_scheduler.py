"""The batch scheduler on tiny, hand-computed cases (blocks of 16 tokens)."""

import numpy as np

from servesim.kvcache.manager import KVCacheManager
from servesim.scheduler.batch_scheduler import BatchScheduler
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.lockstep import LockstepScheduler
from servesim.scheduler.sequence import Sequence


def make(num_blocks=11, block_size=16, **cfg):
    return BatchScheduler(SchedulerConfig(**cfg), KVCacheManager(num_blocks, block_size))


def test_lone_request_prefills_then_decodes_until_done():
    s = make()
    a = Sequence(0, 0.0, num_prompt=100, max_output=3)
    s.add(a)
    plan = s.schedule(0.0)
    assert plan.seqs == [a] and plan.num_new == [100]
    assert not plan.is_pure_decode
    assert (plan.shape.num_tokens, plan.shape.num_prefill_seqs, plan.shape.prefill_attn_pairs) == (100, 1, 5050)
    assert s.kv.num_blocks_of(0) == 7  # ceil(100 / 16)
    assert s.on_step_done(plan, 1.0) == []
    assert (a.num_generated, a.first_token_s, a.first_scheduled_s) == (1, 1.0, 0.0)
    plan = s.schedule(1.0)
    assert plan.num_new == [1] and plan.is_pure_decode
    assert plan.shape.decode_kv_tokens == 101
    s.on_step_done(plan, 1.5)
    plan = s.schedule(1.5)
    assert s.on_step_done(plan, 2.5) == [a]
    assert a.num_generated == 3 and a.max_itl_s == 1.0
    assert s.kv.num_free_blocks == 11 and s.num_running == 0
    assert s.schedule(2.5) is None


def test_chunked_prefill_splits_the_second_prompt_over_the_budget():
    s = make(max_num_seqs=4, max_num_batched_tokens=40, num_blocks=20)
    a, b = Sequence(0, 0.0, 30, 5), Sequence(1, 0.0, 20, 5)
    s.add(a)
    s.add(b)
    plan = s.schedule(0.0)
    assert plan.seqs == [a, b] and plan.num_new == [30, 10]
    s.on_step_done(plan, 1.0)
    assert (a.num_generated, b.num_generated, b.num_computed) == (1, 0, 10)
    plan = s.schedule(1.0)
    # Running in order: a decodes one token, b finishes its prompt (10 more).
    assert plan.seqs == [a, b] and plan.num_new == [1, 10]
    assert plan.shape.prefill_attn_pairs == 10 * 10 + 10 * 11 // 2
    s.on_step_done(plan, 2.0)
    assert b.first_token_s == 2.0 and a.num_generated == 2


def test_without_chunking_a_prompt_over_the_budget_waits():
    s = make(max_num_seqs=4, max_num_batched_tokens=40, num_blocks=20, chunked_prefill=False)
    a, b = Sequence(0, 0.0, 30, 5), Sequence(1, 0.0, 20, 5)
    s.add(a)
    s.add(b)
    plan = s.schedule(0.0)
    assert plan.seqs == [a] and plan.num_new == [30]
    assert s.num_waiting == 1


def test_max_num_seqs_caps_the_batch():
    s = make(max_num_seqs=1, max_num_batched_tokens=100, num_blocks=20)
    s.add(Sequence(0, 0.0, 10, 2))
    s.add(Sequence(1, 0.0, 10, 2))
    plan = s.schedule(0.0)
    assert [q.rid for q in plan.seqs] == [0] and s.num_waiting == 1


def test_preemption_by_recompute_when_blocks_run_out():
    s = make(num_blocks=11)
    a, b = Sequence(0, 0.0, 80, 10), Sequence(1, 0.0, 80, 10)
    s.add(a)
    s.add(b)
    plan = s.schedule(0.0)  # 5 + 5 blocks, 1 free
    assert plan.num_new == [80, 80] and s.kv.num_free_blocks == 1
    s.on_step_done(plan, 1.0)
    plan = s.schedule(1.0)
    # a's 81st token takes the last block; b needs a 6th block too and is
    # the FCFS victim (the latest admitted), so it preempts itself.
    assert plan.seqs == [a] and plan.preempted == [b]
    assert (b.num_computed, b.num_preemptions, b.num_generated) == (0, 1, 1)
    assert s.kv.num_blocks_of(1) == 0 and s.kv.num_free_blocks == 5
    assert s.num_waiting == 1 and s.num_running == 1
    s.on_step_done(plan, 2.0)
    # b must recompute 81 tokens (6 blocks) but only 5 are free: it waits.
    plan = s.schedule(2.0)
    assert plan.seqs == [a] and s.num_waiting == 1
    # Once a finishes and frees its blocks, b recomputes prompt + its 1 token.
    while a.num_generated < a.max_output:
        s.on_step_done(plan, 3.0)
        plan = s.schedule(3.0)
    assert plan.seqs == [b] and plan.num_new == [81]


def test_priority_policy_admits_urgent_first_and_preempts_least_urgent():
    s = make(num_blocks=11, policy="priority", max_num_seqs=1, max_num_batched_tokens=256)
    s.add(Sequence(0, 0.0, 16, 2, priority=5))
    s.add(Sequence(1, 0.1, 16, 2, priority=1))
    s.add(Sequence(2, 0.2, 16, 2, priority=1))
    plan = s.schedule(0.3)
    assert [q.rid for q in plan.seqs] == [1]
    running = [Sequence(9, 0.0, 1, 1, priority=1), Sequence(8, 0.5, 1, 1, priority=3), Sequence(7, 0.1, 1, 1, priority=3)]
    assert s.waiting.victim_index(running) == 1


def make_lockstep(num_blocks=11, block_size=16, **cfg):
    return LockstepScheduler(SchedulerConfig(**cfg), KVCacheManager(num_blocks, block_size))


def test_decode_run_stops_at_first_completion_when_requests_wait():
    s = make_lockstep(num_blocks=100, max_num_seqs=2)
    a, b, c = Sequence(0, 0.0, 10, 7), Sequence(1, 0.0, 10, 4), Sequence(2, 0.0, 10, 4)
    for q in (a, b, c):
        s.add(q)
    s.on_step_done(s.schedule(0.0), 1.0)
    plan = s.schedule(1.0)
    assert plan.is_pure_decode and s.num_waiting == 1
    # b has 3 tokens left: the run is 3 iterations, b finishing in the last;
    # then c may be admitted.
    run = s.decode_run(plan, 64)
    assert (run.max_steps, run.finish_steps, run.finish_seqs) == (3, [2], [b])


def test_decode_run_continues_through_completions_when_nobody_waits():
    s = make_lockstep(num_blocks=100)
    a, b = Sequence(0, 0.0, 10, 7), Sequence(1, 0.0, 10, 4)
    s.add(a)
    s.add(b)
    s.on_step_done(s.schedule(0.0), 1.0)
    plan = s.schedule(1.0)
    run = s.decode_run(plan, 64)
    # b finishes in iteration 2, a (6 tokens left) in iteration 5; the batch
    # shrinks from 2 to 1 after iteration 2.  KV read in iteration 0: 11 + 11.
    assert (run.max_steps, run.finish_steps, run.finish_seqs) == (6, [2, 5], [b, a])
    assert [run.batch(j) for j in range(6)] == [2, 2, 2, 1, 1, 1]
    assert run.kv0 == 22 and run.finish_kv == [11, 11]
    assert run.tokens_through(6) == 3 * 2 + 3 * 1


def test_decode_run_stops_before_blocks_run_out():
    s = make_lockstep(num_blocks=3, block_size=16)
    a = Sequence(0, 0.0, 16, 100)
    s.add(a)
    s.on_step_done(s.schedule(0.0), 1.0)  # 1 block holds the prompt
    plan = s.schedule(1.0)  # token 17 -> 2nd block
    # With 1 free block: cached 16 + k tokens fit in 3 blocks for k <= 32.
    assert s.decode_run(plan, 64).max_steps == 32


def test_applying_a_decode_run_equals_stepping_the_reference_one_by_one():
    def seqs():
        return [Sequence(i, 0.0, 20 + 7 * i, 30 + i) for i in range(3)]

    def prime(s, batch):
        for q in batch:
            s.add(q)
        s.on_step_done(s.schedule(0.0), 0.5)
        return s.schedule(0.5)

    fast, fast_seqs = make_lockstep(num_blocks=40), seqs()
    plan = prime(fast, fast_seqs)
    run = fast.decode_run(plan, 64)
    ends = (0.5 + np.cumsum(np.linspace(0.01, 0.02, run.max_steps))).tolist()
    fast.apply_decode_run(plan, run, ends)
    fast.materialize()

    ref, ref_seqs = make(num_blocks=40), seqs()
    plan = prime(ref, ref_seqs)
    for j in range(len(ends)):
        if j:
            plan = ref.schedule(ends[j - 1])
        ref.on_step_done(plan, ends[j])

    def state(s, batch):
        return [(q.num_generated, q.num_computed, q.last_token_s, q.max_itl_s, s.kv.num_blocks_of(q.rid)) for q in batch]

    # Nobody waits: the run lasts until the last of them (31 tokens left) is done.
    assert run.max_steps == 31 and run.finish_steps == [28, 29, 30]
    assert state(fast, fast_seqs) == state(ref, ref_seqs)
