"""MoE layers (active experts, expert parallelism, load imbalance) and TP/PP links."""

import pytest

from servesim.errors import DeploymentError
from servesim.perf.batch_shape import BatchShape
from servesim.perf.catalog import Catalog
from servesim.perf.steptime import StepTimeModel
from servesim.perf.steptime_params import StepTimeParams

CAT = Catalog.default()
MIXTRAL = CAT.model("mixtral-8x7b")
H100 = CAT.hardware("h100")


def test_a_single_token_reads_exactly_its_active_experts():
    # T=1 token with k=2 of E=8 experts touches E*(1-(1-k/E)^1) = 2 experts.
    m = StepTimeModel(MIXTRAL, H100, tensor_parallel=2)
    p = m.params
    bw = H100.mem_bw_bytes_s * p.mem_bw_efficiency
    one_expert = MIXTRAL.num_moe_layers * MIXTRAL.expert_params / 2 * 2 / bw
    assert m._expert_weight_s_per_expert == pytest.approx(one_expert)
    touched = 8 * (1 - (1 - 2 / 8) ** 1)
    assert touched == pytest.approx(2.0)
    # Decode of one sequence is weight-bound: all 8 experts would cost 4x the 2 active ones.
    t1 = m.breakdown(BatchShape.build(decode_context_lens=[100])).gemm_s
    t_many = m.breakdown(BatchShape.build(decode_context_lens=[100] * 64)).gemm_s
    assert t_many > t1 + 4 * one_expert  # 64 tokens touch nearly all 8 experts


def test_expert_parallel_balanced_equals_tensor_parallel_and_imbalance_slows_it():
    shape = BatchShape.build(prefill_chunks=[(0, 8192)])  # compute-bound expert GEMMs
    tp = StepTimeModel(MIXTRAL, H100, tensor_parallel=4).breakdown(shape)
    ep = StepTimeModel(MIXTRAL, H100, tensor_parallel=4, expert_parallel=True).breakdown(shape)
    assert ep.total_s == tp.total_s
    skew = StepTimeParams(moe_load_imbalance=1.5)
    ep_skew = StepTimeModel(MIXTRAL, H100, tensor_parallel=4, params=skew, expert_parallel=True).breakdown(shape)
    tp_skew = StepTimeModel(MIXTRAL, H100, tensor_parallel=4, params=skew).breakdown(shape)
    # Imbalance only matters with EP; it scales the routed expert rows by 1.5.
    assert tp_skew.total_s == tp.total_s
    m = StepTimeModel(MIXTRAL, H100, tensor_parallel=4)
    routed = 8192 * m._expert_s_per_token
    assert ep_skew.gemm_s - ep.gemm_s == pytest.approx(0.5 * routed, rel=1e-9)


def test_expert_parallel_needs_experts_that_split():
    with pytest.raises(DeploymentError, match="no experts"):
        StepTimeModel(CAT.model("llama-3-8b"), H100, expert_parallel=True)
    # DeepSeek-V3's 256 experts split over 8 ranks, Mixtral's 8 do not split over 16.
    StepTimeModel(CAT.model("deepseek-v3"), H100, tensor_parallel=8, expert_parallel=True)
    with pytest.raises(DeploymentError, match="do not split evenly"):
        StepTimeModel(MIXTRAL, H100, tensor_parallel=16, expert_parallel=True)


def test_tensor_parallel_all_reduce_uses_the_catalog_link():
    # Two all-reduces per layer, ring volume 2*(tp-1)/tp of the tokens' hidden
    # states, over NVLink on H100 and PCIe on L40S (no NVLink).
    llama = CAT.model("llama-3-8b")
    shape = BatchShape.build(prefill_chunks=[(0, 1000)])
    p = StepTimeParams()
    for gpu, link_gbs in (("h100", 450), ("l40s", 32)):
        comm = StepTimeModel(llama, CAT.hardware(gpu), tensor_parallel=2).breakdown(shape).communication_s
        volume = 2 * 32 * (2 * (2 - 1) / 2) * 1000 * 4096 * 2
        expected = volume / (link_gbs * 1e9 * p.link_efficiency) + 2 * 32 * p.allreduce_latency_s
        assert comm == pytest.approx(expected, rel=1e-9)
    assert StepTimeModel(llama, H100).breakdown(shape).communication_s == 0.0


def test_pipeline_stages_send_activations():
    llama = CAT.model("llama-3-70b")
    shape = BatchShape.build(prefill_chunks=[(0, 1000)])
    p = StepTimeParams()
    comm = StepTimeModel(llama, H100, tensor_parallel=1, pipeline_parallel=4).breakdown(shape).communication_s
    # 3 hops inside one node: 1000 tokens * 8192 hidden * 2 bytes each, plus a latency per hop.
    expected = 3 * 1000 * 8192 * 2 / (450e9 * p.link_efficiency) + 3 * p.p2p_latency_s
    assert comm == pytest.approx(expected, rel=1e-9)


def test_scenario_expert_parallel_with_imbalance_slows_prefill():
    import servesim

    def ttft(**extra):
        cfg = {
            "workload": {
                "kind": "synthetic", "num_requests": 20,
                "arrival": {"process": "constant", "rate_rps": 1.0},
                "prompt_tokens": {"dist": "fixed", "value": 4000},
                "output_tokens": {"dist": "fixed", "value": 4},
            },
            # The plain harness: one set of GEMM efficiencies for either split of the experts.
            "cluster": {"engine": "pytorch", "model": "mixtral-8x7b", "hardware": "h100", "tensor_parallel": 2,
                        **extra.get("cluster", {})},
            "perf": extra.get("perf", {}),
        }
        return servesim.simulate(cfg).summary["ttft_s"]["mean"]

    base = ttft()
    assert ttft(cluster={"expert_parallel": True}) == base
    assert ttft(cluster={"expert_parallel": True}, perf={"moe_load_imbalance": 2.0}) > 1.2 * base
    with pytest.raises(servesim.DeploymentError, match="no experts"):
        servesim.simulate({"cluster": {"expert_parallel": True}})
