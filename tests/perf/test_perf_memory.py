"""Memory plan: weights, reserve and KV blocks per GPU; deployments that do not fit."""

from __future__ import annotations

import math

import pytest

from servesim.errors import ConfigError, DeploymentError
from servesim.perf import Catalog, default_activation_reserve_bytes, kv_bytes_per_token_per_gpu, plan_memory

CATALOG = Catalog.default()
H100 = CATALOG.hardware("h100")
LLAMA_8B = CATALOG.model("llama-3-8b")


def test_llama_3_8b_on_one_h100_by_hand():
    plan = plan_memory(LLAMA_8B, H100, tensor_parallel=1, pipeline_parallel=1, gpu_memory_utilization=0.9, block_size=16)
    reserve = 1e9 + 2 * 2 * 8192 * (4096 + 3 * 14336)
    assert plan.activation_reserve_bytes == reserve
    assert plan.budget_bytes == 72e9
    assert plan.weight_bytes_per_gpu == 2 * LLAMA_8B.num_params
    assert plan.kv_cache_bytes_per_gpu == 72e9 - 2 * LLAMA_8B.num_params - reserve
    assert plan.kv_bytes_per_token_per_gpu == 131072
    assert plan.num_kv_blocks == math.floor(plan.kv_cache_bytes_per_gpu / (16 * 131072))
    assert plan.kv_capacity_tokens == plan.num_kv_blocks * 16
    assert plan.num_gpus == 1


def test_model_that_does_not_fit_names_sizes_and_remedy():
    with pytest.raises(DeploymentError) as err:
        plan_memory(CATALOG.model("llama-3-70b"), H100, 1, 1, 0.9, 16)
    assert str(err.value) == (
        "llama-3-70b does not fit on 1 x h100 (tp=1, pp=1): weights need 141.1 GB per GPU, "
        "budget is 72.0 GB (gpu_memory_utilization=0.9 of 80 GB); raise tensor_parallel or pick a larger GPU"
    )


def test_no_room_for_one_block_is_a_deployment_error():
    with pytest.raises(DeploymentError, match=r"less than one KV block of 16 tokens") as err:
        plan_memory(LLAMA_8B, H100, activation_reserve_gb=55.9394)  # leaves ~0.08 MB
    assert "\n" not in str(err.value)


def test_weights_and_kv_split_over_tensor_parallel():
    m = CATALOG.model("llama-3-70b")
    plan = plan_memory(m, H100, tensor_parallel=4)
    assert plan.weight_bytes_per_gpu == 2 * m.num_params / 4
    assert plan.kv_bytes_per_token_per_gpu == m.kv_bytes_per_token(2) / 4
    # Default reserve shrinks with TP (MLP activations are split).
    assert plan.activation_reserve_bytes == default_activation_reserve_bytes(m, 4)


def test_kv_heads_replicate_when_tp_exceeds_them():
    m = CATALOG.model("llama-3-70b")  # 8 KV heads
    assert kv_bytes_per_token_per_gpu(m, 16, 1) == m.kv_bytes_per_token(2) / 8


def test_mla_cache_is_replicated_across_tp_and_split_by_pp():
    m = CATALOG.model("deepseek-v3")
    assert kv_bytes_per_token_per_gpu(m, 8, 1) == m.kv_bytes_per_token(2)
    # 61 layers over 2 stages: the fuller stage holds 31.
    assert kv_bytes_per_token_per_gpu(m, 8, 2) == 31 * 576 * 2
    plan = plan_memory(m, CATALOG.hardware("h200"), tensor_parallel=8, weight_bytes_per_param=1)
    assert plan.weight_bytes_per_gpu == m.num_params / 8
    assert plan.num_kv_blocks > 0


def test_explicit_reserve_and_kv_dtype():
    plan = plan_memory(LLAMA_8B, H100, activation_reserve_gb=4.0, kv_bytes_per_elem=1)
    assert plan.activation_reserve_bytes == 4e9
    assert plan.kv_bytes_per_token_per_gpu == 65536


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization must be in \\(0, 1\\]"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in \\(0, 1\\]"),
        ({"block_size": 0}, "block_size must be an integer >= 1"),
        ({"tensor_parallel": 0}, "tensor_parallel must be an integer >= 1"),
        ({"pipeline_parallel": 1.5}, "pipeline_parallel must be an integer >= 1"),
        ({"activation_reserve_gb": -1.0}, "activation_reserve_gb must be >= 0"),
        ({"weight_bytes_per_param": 0}, "weight_bytes_per_param must be > 0"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_memory(LLAMA_8B, H100, **kwargs)


def test_parallelism_the_model_cannot_split_is_a_deployment_error():
    with pytest.raises(DeploymentError, match=r"28 attention heads do not split evenly"):
        plan_memory(CATALOG.model("qwen2.5-7b"), H100, tensor_parallel=8)
    with pytest.raises(DeploymentError, match=r"has only 32 layers"):
        plan_memory(LLAMA_8B, H100, pipeline_parallel=64)


def test_every_model_fits_somewhere_reasonable():
    """Smoke: each packaged model plans on 8 H200s (8-bit weights where needed)."""
    h200 = CATALOG.hardware("h200")
    for model_id in CATALOG.model_ids:
        m = CATALOG.model(model_id)
        tp = 8 if m.num_heads % 8 == 0 else 4
        wbytes = 1 if m.num_params > 400e9 else 2
        assert plan_memory(m, h200, tensor_parallel=tp, weight_bytes_per_param=wbytes).num_kv_blocks > 0


def test_hybrid_attention_keeps_kv_in_its_full_attention_layers_only():
    """Llama-3-8B's shapes with 4 of 32 layers keeping KV: an eighth of the KV bytes per token
    (131072 / 8 = 16384 on one GPU; 8192 per GPU of a two-stage pipeline), eight times the tokens,
    and the step model's decode attention reads an eighth as many KV bytes."""
    from servesim.perf.steptime import StepTimeModel

    hybrid = LLAMA_8B.model_copy(update={"kv_cache_layers": 4})
    assert hybrid.kv_bytes_per_token(2) == LLAMA_8B.kv_bytes_per_token(2) / 8
    assert kv_bytes_per_token_per_gpu(hybrid, 1, 1) == 16384
    assert kv_bytes_per_token_per_gpu(hybrid, 1, 2) == 8192
    dense_plan = plan_memory(LLAMA_8B, H100)
    hybrid_plan = plan_memory(hybrid, H100)
    assert hybrid_plan.num_kv_blocks == math.floor(dense_plan.kv_cache_bytes_per_gpu / (16 * 16384))
    dense_step, hybrid_step = StepTimeModel(LLAMA_8B, H100), StepTimeModel(hybrid, H100)
    # Decode time grows with context by the KV read: 8x less steep for the hybrid model.
    dense_slope = dense_step.decode_time_s(1, 200_001) - dense_step.decode_time_s(1, 1)
    hybrid_slope = hybrid_step.decode_time_s(1, 200_001) - hybrid_step.decode_time_s(1, 1)
    assert hybrid_slope == pytest.approx(dense_slope / 8, rel=1e-9)


def test_kv_cache_layers_cannot_exceed_the_layers():
    with pytest.raises(ValueError, match="kv_cache_layers: must be at most num_layers"):
        LLAMA_8B.model_validate({**LLAMA_8B.model_dump(), "kv_cache_layers": 33})
