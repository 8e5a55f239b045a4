"""Benchmark-client workloads: inference-perf's shared_prefix under stages, closed-loop clients."""

from __future__ import annotations

import numpy as np
import pytest

import servesim
from servesim.core.rng import RandomStreams
from servesim.errors import ConfigError
from servesim.workload import benchmarks
from servesim.workload.builder import build_workload
from servesim.workload.config import parse_workload_config

SHARED = {
    "kind": "shared_prefix",
    "num_system_prompts": 2,
    "users_per_system_prompt": 2,
    "system_prompt_tokens": 40,
    "question_tokens": 10,
    "output_tokens": 3,
    "stages": [{"rate_rps": 2, "duration_s": 3}, {"rate_rps": 4, "duration_s": 1}],
}
CLOSED = {"kind": "closed_loop", "concurrency": 2, "num_requests": 5, "input_len": 100, "output_len": 10}


def build(data: dict, seed: int = 0):
    return build_workload(parse_workload_config(data), RandomStreams(seed))


# --------------------------------------------------------------------------- stages


def test_constant_stages_are_evenly_spaced_back_to_back():
    times, stage = benchmarks.stage_arrivals([(2.0, 3.0), (4.0, 1.0)], "constant", np.random.default_rng(0))
    np.testing.assert_array_equal(times, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.25, 3.5, 3.75])
    np.testing.assert_array_equal(stage, [0] * 6 + [1] * 4)
    np.testing.assert_array_equal(benchmarks.stage_of(times, [3.0, 1.0]), stage)


def test_a_stage_sends_int_rate_times_duration():
    assert benchmarks.stage_requests(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert benchmarks.stage_requests(0.5, 3) == 1
    times, _ = benchmarks.stage_arrivals([(0.5, 3.0)], "constant", np.random.default_rng(0))
    np.testing.assert_array_equal(times, [0.0])


def test_inference_perf_arrivals_fill_each_stage_exactly():
    times, stage = benchmarks.stage_arrivals([(5.0, 2.0), (1.0, 4.0)], "inference_perf", np.random.default_rng(3))
    assert list(np.bincount(stage)) == [10, 4]
    # The rescaled gaps sum to the stage's length: each stage's last request at its end.
    assert times[9] == pytest.approx(2.0) and times[13] == pytest.approx(6.0)
    assert np.all(np.diff(times) > 0) and times[0] > 0


def test_poisson_arrivals_stay_inside_their_stage():
    times, stage = benchmarks.stage_arrivals([(50.0, 2.0), (10.0, 1.0)], "poisson", np.random.default_rng(1))
    assert np.all(times[stage == 0] < 2.0) and np.all((times[stage == 1] >= 2.0) & (times[stage == 1] < 3.0))
    assert 70 < len(times) < 150


# --------------------------------------------------------------------------- shared prefix


def test_shared_prefix_chains_share_the_system_prompt_and_repeat_exactly():
    w = build(SHARED)
    assert len(w) == 10 and w.prefix_block_size == 16
    assert set(w.prompt_tokens.tolist()) == {50} and set(w.output_tokens.tolist()) == {3}
    # 50 tokens = 4 blocks of 16; the 40-token system prompt fills 2.  Group g's blocks are
    # 2g, 2g + 1; prompt p = 2g + j owns 4 + 2p and 5 + 2p.
    expected = {p: (2 * (p // 2), 2 * (p // 2) + 1, 4 + 2 * p, 5 + 2 * p) for p in range(4)}
    order = RandomStreams(0).stream("workload.shuffle").permutation(4)
    sent = [expected[int(order[k % 4])] for k in range(6)] + [expected[int(order[k])] for k in range(4)]
    assert w.prefix_block_ids == sent  # the cycle starts again with the second stage


def test_extra_prompt_tokens_join_the_shared_head():
    w = build({**SHARED, "extra_prompt_tokens": 8})  # 8 + 40 = 48 shared tokens: 3 blocks; 58 tokens: 4 blocks
    assert set(w.prompt_tokens.tolist()) == {58}
    chains = set(w.prefix_block_ids)
    assert chains == {(0, 1, 2, 6), (0, 1, 2, 7), (3, 4, 5, 8), (3, 4, 5, 9)}


def test_shared_prefix_is_deterministic_and_seeded():
    a, b = build({**SHARED, "arrival": "poisson"}, 5), build({**SHARED, "arrival": "poisson"}, 5)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert a.prefix_block_ids == b.prefix_block_ids


def test_shared_prefix_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^workload\.stages: "):
        parse_workload_config({**SHARED, "stages": []})
    with pytest.raises(ConfigError, match=r"^workload\.arrival: .*'constant'"):
        parse_workload_config({**SHARED, "arrival": "gamma"})
    with pytest.raises(ConfigError, match=r"workload\.stages: .*send no request"):
        build({**SHARED, "stages": [{"rate_rps": 0.1, "duration_s": 5}]})


def test_shared_prefix_end_to_end_cache_hits():
    # 6 requests 0.5 s apart cycle through 4 prompts (2 groups x 2 questions).  The first of each
    # group hits nothing, the second hits its group's 2 system blocks (32 tokens), the two
    # repeats hit their 3 full blocks (48 tokens; the 4th block is partial): 10 hit blocks.
    result = servesim.simulate({
        "workload": {**SHARED, "stages": SHARED["stages"][:1]},
        "cluster": {"model": "llama-3-8b", "hardware": "h100", "prefix_caching": True},
    })
    cached = result.requests.cached_tokens
    assert sorted(cached[:4].tolist()) == [0, 0, 32, 32] and cached[4:].tolist() == [48, 48]
    assert result.summary["kv_cache"]["tiers"]["gpu"]["hit_blocks"] == 10


# --------------------------------------------------------------------------- closed loop


def test_closed_loop_clients_follow_their_previous_request():
    w = build(CLOSED)
    np.testing.assert_array_equal(w.arrival_s, [0, 0, np.inf, np.inf, np.inf])
    np.testing.assert_array_equal(w.follows, [-1, -1, 0, 1, 2])
    np.testing.assert_array_equal(w.think_s, np.zeros(5))
    assert w.session_id.tolist() == ["0", "1", "0", "1", "0"]
    assert set(w.prompt_tokens.tolist()) == {100} and set(w.output_tokens.tolist()) == {10}
    assert w.prefix_block_ids is None


def test_range_ratio_draws_in_ceil_r_l_to_l():
    rng = np.random.default_rng(0)
    drawn = benchmarks.range_lengths(rng, 2000, 7, 0.5)  # ceil(3.5) = 4
    assert set(drawn.tolist()) == {4, 5, 6, 7}
    assert set(benchmarks.range_lengths(rng, 100, 10, 0.3).tolist()) == set(range(3, 11))
    np.testing.assert_array_equal(benchmarks.range_lengths(rng, 3, 9, 1.0), [9, 9, 9])
    w = build({**CLOSED, "num_requests": 400, "range_ratio": 0.25})
    assert w.prompt_tokens.min() >= 25 and w.prompt_tokens.max() <= 100
    assert w.output_tokens.min() >= 3 and w.output_tokens.max() <= 10


def test_closed_loop_shared_prefixes_are_added_and_shared():
    w = build({**CLOSED, "shared_prefix_tokens": 32, "num_prefixes": 2})
    assert set(w.prompt_tokens.tolist()) == {132}  # 100 drawn + 32 shared
    heads = {chain[:2] for chain in w.prefix_block_ids}
    assert heads <= {(0, 1), (2, 3)}  # prefix i owns blocks 2i, 2i + 1
    tails = [b for chain in w.prefix_block_ids for b in chain[2:]]
    assert len(tails) == len(set(tails)) and min(tails) >= 4  # the rest is fresh
    np.testing.assert_array_equal(w.follows, [-1, -1, 0, 1, 2])


def test_closed_loop_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^workload\.concurrency: .*\(value 0\)"):
        parse_workload_config({**CLOSED, "concurrency": 0})
    with pytest.raises(ConfigError, match=r"^workload\.range_ratio: .*\(value 1\.5\)"):
        parse_workload_config({**CLOSED, "range_ratio": 1.5})


def test_closed_loop_end_to_end_one_client_never_overlaps():
    result = servesim.simulate({
        "workload": {**CLOSED, "concurrency": 1, "num_requests": 4},
        "cluster": {"model": "llama-3-8b", "hardware": "h100"},
    })
    t = result.requests
    assert (t.status == 0).all() and t.arrival_s[0] == 0.0
    # Each request is sent the moment the one before it finished.
    np.testing.assert_array_equal(t.arrival_s[1:], t.finish_s[:-1])
    assert np.all(t.first_token_s > t.arrival_s)


def test_closed_loop_end_to_end_keeps_n_in_flight():
    result = servesim.simulate({
        "workload": {**CLOSED, "concurrency": 3, "num_requests": 9},
        "cluster": {"model": "llama-3-8b", "hardware": "h100"},
    })
    t = result.requests
    events = sorted([(a, 1) for a in t.arrival_s] + [(f, -1) for f in t.finish_s], key=lambda e: (e[0], e[1]))
    in_flight = np.cumsum([d for _, d in events])
    assert in_flight.max() == 3


def test_closed_loop_clients_cannot_sit_behind_a_semantic_cache():
    import servesim

    with pytest.raises(servesim.ConfigError, match="closed_loop workloads"):
        servesim.simulate({"workload": {"kind": "closed_loop", "concurrency": 2, "num_requests": 4, "input_len": 8,
                                        "output_len": 2},
                           "semantic_cache": {"categories": [{"name": "a", "share": 1, "num_topics": 10}]}})
