"""Non-uniform KV compression (Tangram): capacity, attention reads and the uniform layout's costs."""

from __future__ import annotations

import math

import pytest

import servesim
from servesim.config import validate_config
from servesim.deployment import build_deployment
from servesim.perf import BatchShape
from servesim.perf.kv_compression import LayoutStepModel


def _deployment(**compression):
    cluster = {"model": "llama-3-8b", "hardware": "h100"}
    if compression:
        cluster["kv_compression"] = compression
    return build_deployment(validate_config({"cluster": cluster}))


def test_ragged_pages_hold_the_compressed_footprint_and_read_as_much():
    full = _deployment()
    ragged = _deployment(footprint_ratio=0.25, paging="ragged")
    # 131,072 bytes per token in full; a quarter of it in ragged pages.
    assert ragged.memory.kv_bytes_per_token_per_gpu == 131072 * 0.25
    assert ragged.memory.num_kv_blocks == math.floor(full.memory.kv_cache_bytes_per_gpu / (16 * 131072 * 0.25))
    # Decode attention reads a quarter of the bytes: its slope against context is a quarter.
    slope = lambda m: m.decode_time_s(1, 100_001) - m.decode_time_s(1, 1)  # noqa: E731
    assert slope(ragged.step_model) == pytest.approx(slope(full.step_model) / 4, rel=1e-9)


def test_uniform_pages_waste_room_and_slow_prefill_and_decode():
    ragged = _deployment(footprint_ratio=0.25, paging="ragged")
    uniform = _deployment(footprint_ratio=0.25, paging="uniform", uniform_waste=0.3,
                          uniform_prefill_overhead=0.25, uniform_decode_slowdown=1.7)
    assert uniform.memory.kv_bytes_per_token_per_gpu == pytest.approx(131072 * 0.25 * 1.3)
    assert isinstance(uniform.step_model, LayoutStepModel)
    prefill = BatchShape.build([(0, 512)], [1000] * 4)
    assert uniform.step_model.time_s(prefill) == pytest.approx(1.25 * ragged.step_model.time_s(prefill), rel=1e-12)
    assert uniform.step_model.decode_time_s(8, 8000) == pytest.approx(1.7 * ragged.step_model.decode_time_s(8, 8000), rel=1e-12)
    decode = BatchShape.build(decode_context_lens=[1000] * 8)
    assert uniform.step_model.time_s(decode) == pytest.approx(1.7 * ragged.step_model.time_s(decode), rel=1e-12)


def test_compression_raises_throughput_when_kv_bounds_the_batch():
    scenario = {"seed": 1,
                "workload": {"kind": "synthetic", "num_requests": 300, "arrival": {"process": "poisson", "rate_rps": 50},
                             "prompt_tokens": {"dist": "fixed", "value": 3000}, "output_tokens": {"dist": "fixed", "value": 500}},
                "cluster": {"hardware": "l40s"}}
    full = servesim.simulate(scenario).summary
    scenario["cluster"]["kv_compression"] = {"footprint_ratio": 0.25}
    ragged = servesim.simulate(scenario).summary
    scenario["cluster"]["kv_compression"]["paging"] = "uniform"
    uniform = servesim.simulate(scenario).summary
    assert ragged["mean_running_batch"] > 2 * full["mean_running_batch"]
    assert ragged["output_tokens_per_s"] > uniform["output_tokens_per_s"] > full["output_tokens_per_s"]
