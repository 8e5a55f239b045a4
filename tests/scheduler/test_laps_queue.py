"""LAPS's dual queue on one instance: short prompts first, long ones with a bounded wait."""

import numpy as np
from fakes import LinearStepModel

from servesim.cluster.conservation import check_conservation
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.queues import LengthAwareQueue
from servesim.scheduler.sequence import Sequence
from servesim.workload.request import Request, Workload


def test_short_prompts_pass_long_ones_for_a_bounded_time():
    q = LengthAwareQueue(threshold_tokens=256, max_wait_s=1.0)
    long0, short05, short20 = Sequence(0, 0.0, 3000, 5), Sequence(1, 0.5, 100, 5), Sequence(2, 2.0, 100, 5)
    for seq in (long0, short05, short20):
        q.push(seq)
    # short05 arrived within 1 s of long0: it goes first; short20 arrived 2 s after: long0 first.
    assert [s.rid for s in q] == [1, 0, 2]
    assert [q.pop().rid for _ in range(3)] == [1, 0, 2] and len(q) == 0


def test_preempted_sequences_go_back_to_the_front_of_their_queue():
    q = LengthAwareQueue(256, 1.0)
    a, b = Sequence(0, 0.0, 100, 5), Sequence(1, 0.1, 100, 5)
    q.push(a)
    q.push_preempted(b)
    assert q.peek() is b


def _first_tokens(policy):
    # One replica, 2,048 tokens per iteration.  A (3,000 tokens) starts alone at 0; B (3,000) and
    # C (100) arrive while it runs.  Iterations: A's first chunk (2,048 tokens); then A's last 952
    # plus whatever is admitted into the 1,096 left.  FCFS admits B (a 1,096 chunk) and C waits a
    # third iteration (A's decode, B's last 1,904, C's 100).  LAPS admits C first (100) and B's
    # first 996 beside it, so C's first token comes one iteration earlier.
    reqs = [Request(0.0, 3000, 2), Request(0.001, 3000, 2), Request(0.002, 100, 2)]
    sim = Simulation(Workload.from_requests(reqs),
                     ReplicaSetup(1000, 16, 100_000, SchedulerConfig(max_num_batched_tokens=2048, policy=policy)),
                     1, RoundRobinRouter(), LinearStepModel())
    out = sim.run()
    check_conservation(out.requests, sim.replicas)
    return out.requests.first_token_s


def test_laps_gives_a_short_prompt_its_first_token_an_iteration_earlier():
    full = 0.01 + 0.001 * 2048
    fcfs, laps = _first_tokens("fcfs"), _first_tokens("laps")
    assert fcfs[2] == (0.0 + full + full) + (0.01 + 0.001 * 2005)
    assert laps[2] == 0.0 + full + full
    assert np.all(laps[:1] == fcfs[:1])  # A is unaffected
