"""The priority queue policy end to end: urgent requests wait less under load."""

import numpy as np
import pytest

import servesim
from servesim.errors import ConfigError


def scenario(policy):
    return {
        "seed": 5,
        "workload": {
            "kind": "synthetic",
            "num_requests": 600,
            "arrival": {"process": "poisson", "rate_rps": 3.2},
            "prompt_tokens": {"dist": "fixed", "value": 1500},
            "output_tokens": {"dist": "fixed", "value": 60},
            "priority_mix": {0: 0.25, 1: 0.75},
        },
        "cluster": {"model": "llama-3-8b", "hardware": "l4"},
        "scheduler": {"policy": policy, "max_num_seqs": 16, "max_num_batched_tokens": 2048},
    }


def test_priority_mix_draws_levels_in_proportion():
    result = servesim.simulate(scenario("fcfs"))
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload

    cfg = result.config
    w = build_workload(cfg.workload, RandomStreams(cfg.seed))
    share_urgent = float(np.mean(w.priority == 0))
    assert set(np.unique(w.priority)) == {0, 1}
    assert share_urgent == pytest.approx(0.25, abs=0.05)


def test_priority_policy_cuts_urgent_queueing_delay():
    def urgent_vs_rest(policy):
        r = servesim.simulate(scenario(policy))
        cfg = r.config
        from servesim.core.rng import RandomStreams
        from servesim.workload.builder import build_workload

        prio = build_workload(cfg.workload, RandomStreams(cfg.seed)).priority
        delay = r.requests.queue_delay_s()
        return float(np.mean(delay[prio == 0])), float(np.mean(delay[prio == 1]))

    fcfs_urgent, fcfs_rest = urgent_vs_rest("fcfs")
    prio_urgent, prio_rest = urgent_vs_rest("priority")
    # FCFS ignores priority: both classes wait about the same.
    assert fcfs_urgent == pytest.approx(fcfs_rest, rel=0.5)
    # The priority queue admits urgent requests first: they wait far less.
    assert prio_urgent < 0.5 * fcfs_urgent
    assert prio_rest > prio_urgent


def test_priority_mix_must_sum_to_one():
    bad = scenario("fcfs")
    bad["workload"]["priority_mix"] = {0: 0.5, 1: 0.2}
    with pytest.raises(ConfigError, match="priority_mix"):
        servesim.simulate(bad)
