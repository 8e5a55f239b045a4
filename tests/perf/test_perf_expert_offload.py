"""MoE expert offloading: the cache's hit rate, the time misses cost, and the memory it frees."""

from __future__ import annotations

import pytest
from fakes import LinearStepModel

import servesim
from servesim.config import validate_config
from servesim.deployment import build_deployment
from servesim.errors import ConfigError, DeploymentError
from servesim.perf import Catalog
from servesim.perf.expert_offload import ExpertOffloadStepModel, cache_hit_rate, default_routing_consistency

MIXTRAL = Catalog.default().model("mixtral-8x7b")  # 8 experts, 2 per token, 32 MoE layers
DEEPSEEK = Catalog.default().model("deepseek-v3")  # shared experts


def test_hit_rate_saturates_at_twice_the_active_experts():
    # h = c min(1, C / 4) + (1 - c) C / 8 with c = 0.8.
    assert cache_hit_rate(8, 2, 2, 0.8) == pytest.approx(0.8 * 0.5 + 0.2 * 0.25)
    assert cache_hit_rate(8, 2, 4, 0.8) == pytest.approx(0.8 + 0.2 * 0.5)
    assert cache_hit_rate(8, 2, 8, 0.8) == pytest.approx(1.0)
    gains = [cache_hit_rate(8, 2, c + 1, 0.8) - cache_hit_rate(8, 2, c, 0.8) for c in range(2, 8)]
    assert gains[0] > 5 * gains[-1]  # steep up to 2k = 4, flat after
    assert default_routing_consistency(MIXTRAL) == 0.8 and default_routing_consistency(DEEPSEEK) == 0.5


def test_a_miss_costs_a_pcie_load_or_the_cpu_or_the_cheaper():
    expert_bytes = MIXTRAL.expert_params * 2.0
    load = ExpertOffloadStepModel(LinearStepModel(0.0, 0.0), MIXTRAL, 2, 0.8, miss="load", pcie_bytes_per_s=25e9)
    h = 0.45
    touched = 8 * (1 - (6 / 8) ** 4)  # 4 tokens
    assert load.miss_s(4) == pytest.approx(32 * touched * (1 - h) * expert_bytes / 25e9)
    cpu = ExpertOffloadStepModel(LinearStepModel(0.0, 0.0), MIXTRAL, 2, 0.8, miss="cpu", host_bytes_per_s=200e9, cpu_flops_s=1e12)
    tokens_each = 4 * 2 / touched
    per_expert = max(expert_bytes / 200e9, tokens_each * 2 * MIXTRAL.expert_params / 1e12)
    assert cpu.miss_s(4) == pytest.approx(32 * touched * (1 - h) * per_expert)
    auto = ExpertOffloadStepModel(LinearStepModel(0.0, 0.0), MIXTRAL, 2, 0.8, miss="auto")
    assert auto.miss_s(4) == pytest.approx(min(load.miss_s(4), cpu.miss_s(4)))
    assert auto.miss_s(2048) == pytest.approx(min(load.miss_s(2048), cpu.miss_s(2048)))
    assert auto.miss_s(2048) == load.miss_s(2048)  # a long prompt: loading beats the CPU
    # The step model's time plus the misses, decode included.
    assert load.decode_time_s(4, 100) == pytest.approx(load.miss_s(4))


def test_the_gpu_holds_only_the_cached_experts():
    def plan(**offload):
        cluster = {"model": "mixtral-8x7b", "hardware": "h100"}
        if offload:
            cluster["expert_offload"] = offload
        return build_deployment(validate_config({"cluster": cluster})).memory

    with pytest.raises(DeploymentError, match="gpu_experts_per_layer"):
        plan(gpu_experts_per_layer=6)  # six of eight experts leave no room for KV
    four = plan(gpu_experts_per_layer=4)
    two = plan(gpu_experts_per_layer=2)
    # Two experts fewer per layer, in bf16 (and their two rows of the router, 4,096 weights each:
    # the plan counts the router for the cached experts only, half a megabyte off).
    assert two.weight_bytes_per_gpu == four.weight_bytes_per_gpu - 2 * 32 * (MIXTRAL.expert_params + 4096) * 2
    assert two.num_kv_blocks > four.num_kv_blocks


def test_offload_config_errors():
    with pytest.raises(ConfigError, match="dense model"):
        servesim.simulate({"cluster": {"expert_offload": {"gpu_experts_per_layer": 1}}})
    with pytest.raises(ConfigError, match=r"must lie in 2\.\.8"):
        servesim.simulate({"cluster": {"model": "mixtral-8x7b", "expert_offload": {"gpu_experts_per_layer": 1}}})


def test_a_bigger_cache_decodes_faster_in_a_run():
    def tpot(cache):
        return servesim.simulate({"workload": {"kind": "synthetic", "num_requests": 20, "arrival": {"process": "poisson", "rate_rps": 0.2},
                                               "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 20}},
                                  "cluster": {"model": "mixtral-8x7b", "expert_offload": {"gpu_experts_per_layer": cache}}}).summary["tpot_s"]["p50"]
    assert tpot(2) > tpot(3) > tpot(4)


def test_the_summary_counts_the_runs_misses_by_hand():
    """One request, 100 prompt tokens then two decode steps: misses = 32 layers x touched(t) x (1 - h)
    for t = 100, 1, 1, each loaded over PCIe."""
    s = servesim.simulate({
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate_rps": 1},
                     "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 3}},
        "cluster": {"model": "mixtral-8x7b", "expert_offload": {"gpu_experts_per_layer": 4, "miss": "load"}},
    }).summary
    h = cache_hit_rate(8, 2, 4, 0.8)
    touched = lambda t: 8 * (1 - (6 / 8) ** t)  # noqa: E731
    missed = 32 * (touched(100) + 2 * touched(1)) * (1 - h)
    assert s["expert_offload"]["hit_rate"] == pytest.approx(h)
    assert s["expert_offload"]["missed_experts"] == pytest.approx(missed)
    assert s["expert_offload"]["bytes_loaded"] == pytest.approx(missed * MIXTRAL.expert_params * 2)
