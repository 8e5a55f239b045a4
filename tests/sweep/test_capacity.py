"""The capacity bound used to prune searches, by hand with a linear step model, and against simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import LinearStepModel
from sweep_scenarios import tiny_base
from servesim.api import simulate
from servesim.config import validate_config
from servesim.deployment import pool_deployments
from servesim.perf.batch_shape import BatchShape
from servesim.sweep.capacity import (LoadProfile, capacity_bound, load_profile, replica_decode_tokens_per_s,
                                     replica_prefill_tokens_per_s)
from servesim.sweep.executors import InlineExecutor
from servesim.sweep.search import run_search
from servesim.sweep.spec import SearchSpec, parse_spec


def test_prefill_rate_by_hand():
    model = LinearStepModel(base_s=0.01, per_token_s=0.0001)
    # Budget 8192 tokens, prompts of 200: 40 whole prompts = 8000 tokens in one step of
    # 0.01 + 8000 * 0.0001 = 0.81 s  ->  8000 / 0.81 = 9876.54 tokens/s.
    assert replica_prefill_tokens_per_s(model, 8192, 200.0) == pytest.approx(8000 / 0.81)
    # A prompt longer than the budget counts as a budget-sized chunk: 8192 / (0.01 + 0.8192).
    assert replica_prefill_tokens_per_s(model, 8192, 10000.0) == pytest.approx(8192 / 0.8292)


def test_decode_rate_by_hand():
    model = LinearStepModel(base_s=0.01, per_token_s=0.0001, per_kv_token_s=1e-6)
    # Context 200 + 1 = 201 tokens = 13 blocks of 16; 1000 blocks hold 76 sequences, under max_num_seqs 128.
    # Step: 0.01 + 76 * 0.0001 + 76 * 201 * 1e-6 = 0.01 + 0.0076 + 0.015276 = 0.032876 s.
    assert replica_decode_tokens_per_s(model, 128, 1000, 16, 200.0) == pytest.approx(76 / 0.032876)
    # max_num_seqs binds first: 8 sequences, 0.01 + 0.0008 + 8 * 201e-6 = 0.012408 s.
    assert replica_decode_tokens_per_s(model, 8, 1000, 16, 200.0) == pytest.approx(8 / 0.012408)


def test_fleet_bound_is_the_tighter_of_prefill_and_decode():
    config = validate_config({**tiny_base(), "cluster": {"engine": "pytorch", "model": "llama-3-8b", "hardware": "l4",
                                                         "num_replicas": 3}})
    load = LoadProfile(rate_rps=10.0, mean_prompt_tokens=256.0, mean_output_tokens=32.0)
    ((pool, deployment),) = pool_deployments(config)
    step = deployment.step_model
    # By hand from the step model: 32 prompts of 256 fill the 8192-token budget in one step.
    prefill = 3 * 8192 / step.time_s(BatchShape.build(prefill_chunks=[(0, 256)] * 32))
    blocks_per_seq = -(-257 // 16)  # ceil(257 / 16) = 17
    b = min(256, deployment.memory.num_kv_blocks // blocks_per_seq)
    decode = 3 * b / step.decode_time_s(b, b * 257)
    bound = capacity_bound(config, load)
    assert bound.prefill_tokens_per_s == pytest.approx(prefill)
    assert bound.decode_tokens_per_s == pytest.approx(decode)
    # Each request: 256 prompt tokens and 31 decoded ones (the first output token comes from prefill).
    assert bound.max_rps == pytest.approx(min(prefill / 256, decode / 31))


def test_load_profile_is_the_workloads_mean_rate_and_lengths():
    config = validate_config(tiny_base(num_requests=60, rate_rps=8.0))
    load = load_profile(config)
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload

    w = build_workload(config.workload, RandomStreams(config.seed))
    # 60 arrivals span 59 gaps.
    assert load.rate_rps == pytest.approx(59 / (w.arrival_s[-1] - w.arrival_s[0]))
    assert (load.mean_prompt_tokens, load.mean_output_tokens) == (256.0, 32.0)


def test_search_prunes_below_the_bound_and_the_bound_holds_in_simulation(tmp_path: Path):
    # One L4 cannot carry 40 req/s of these requests by its bound; four H100s can.
    base = tiny_base(num_requests=200, rate_rps=40.0)
    spec = parse_spec({"name": "cap", "base": base, "sampler": {"kind": "grid"}, "trials": 2,
                       "space": {"cluster.hardware": {"choice": ["l4", "h100"]}},
                       "prune": {"target_rps": 40.0}}, SearchSpec)
    small = validate_config({**base, "cluster": {**base["cluster"], "hardware": "l4"}})
    bound = capacity_bound(small, load_profile(small))
    assert bound.max_rps < 40.0
    outcome = run_search(spec, tmp_path, tmp_path / "out", InlineExecutor(), progress=False)
    by_gpu = {t.params["cluster.hardware"]: t for t in outcome.trials}
    assert by_gpu["l4"].pruned and by_gpu["l4"].reason == f"capacity bound {bound.max_rps:.3g} req/s < target 40 req/s"
    assert by_gpu["h100"].state == "complete"
    # The pruned deployment, simulated anyway, indeed finishes requests more slowly than its bound allows.
    assert simulate(small).summary["requests_per_s"] <= bound.max_rps
