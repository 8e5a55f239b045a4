"""The batch scheduler on tiny, hand-computed cases (blocks of 16 tokens)."""

import numpy as np

from servesim.kvcache.manager import KVCacheManager
from servesim.scheduler.batch_scheduler import BatchScheduler
from servesim.scheduler.config import SchedulerConfig
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


def test_decode_stretch_limit_stops_at_first_completion():
    s = make(num_blocks=100)
    a, b = Sequence(0, 0.0, 10, 7), Sequence(1, 0.0, 10, 4)
    s.add(a)
    s.add(b)
    s.on_step_done(s.schedule(0.0), 1.0)
    plan = s.schedule(1.0)
    assert plan.is_pure_decode
    # b has 3 tokens left: the stretch runs 3 iterations, b finishing in the last.
    assert s.decode_stretch_limit(plan) == 3


def test_decode_stretch_limit_stops_before_blocks_run_out():
    s = make(num_blocks=3, block_size=16)
    a = Sequence(0, 0.0, 16, 100)
    s.add(a)
    s.on_step_done(s.schedule(0.0), 1.0)  # 1 block holds the prompt
    plan = s.schedule(1.0)  # token 17 -> 2nd block
    # With 1 free block: cached 16 + k tokens fit in 3 blocks for k <= 32.
    assert s.decode_stretch_limit(plan) == 32


def test_applying_a_stretch_equals_stepping_one_by_one():
    def run(stretch):
        s = make(num_blocks=40)
        seqs = [Sequence(i, 0.0, 20 + 7 * i, 30 + i) for i in range(3)]
        for q in seqs:
            s.add(q)
        s.on_step_done(s.schedule(0.0), 0.5)
        t = 0.5
        plan = s.schedule(t)
        k = s.decode_stretch_limit(plan)
        ends = t + np.cumsum(np.linspace(0.01, 0.02, k))
        if stretch:
            s.apply_decode_steps(plan, ends)
        else:
            for j in range(k):
                if j:
                    plan = s.schedule(float(ends[j - 1]))
                s.apply_decode_steps(plan, ends[j : j + 1])
        return [(q.num_generated, q.num_computed, q.last_token_s, q.max_itl_s, s.kv.num_blocks_of(q.rid)) for q in seqs]

    assert run(True) == run(False)
