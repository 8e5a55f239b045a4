"""Weight and KV-cache formats: bytes per element, GEMM rates, memory and speed effects."""

import pytest

import servesim
from servesim.perf.catalog import Catalog
from servesim.perf.dtypes import KV_BYTES_PER_ELEM, WEIGHT_FORMATS
from servesim.perf.memory import plan_memory

CAT = Catalog.default()

MQA_ENTRY = {
    "name": "tiny MQA", "hf_repo": "none/tiny-mqa", "attention": "gqa", "num_layers": 4, "hidden_size": 512,
    "num_heads": 8, "num_kv_heads": 1, "head_dim": 64, "intermediate_size": 1024, "vocab_size": 1000,
    "max_context": 4096,
}


def test_kv_bytes_per_token_for_gqa_mqa_and_mla():
    # GQA: 2 (K and V) * layers * kv_heads * head_dim * bytes.
    assert CAT.model("llama-3-8b").kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2
    # MQA: a single KV head.
    mqa = CAT.with_entries(models={"tiny-mqa": MQA_ENTRY}).model("tiny-mqa")
    assert mqa.kv_bytes_per_token(2) == 2 * 4 * 1 * 64 * 2
    # MLA: one latent of kv_lora_rank + rope dims per layer, no K/V split.
    assert CAT.model("deepseek-v3").kv_bytes_per_token(2) == 61 * (512 + 64) * 2
    # FP8 KV: one byte per element, half of BF16.
    assert CAT.model("llama-3-8b").kv_bytes_per_token(KV_BYTES_PER_ELEM["fp8"]) == 2 * 32 * 8 * 128


def test_weight_formats_bytes_and_gemm_rates():
    assert [WEIGHT_FORMATS[d].bytes_per_param for d in ("bf16", "fp8", "int8", "int4")] == [2.0, 1.0, 1.0, 0.5]
    h100, a100 = CAT.hardware("h100"), CAT.hardware("a100")
    assert h100.tensor_flops_s("fp8") == 1979e12
    assert h100.tensor_flops_s("bf16") == 989e12
    # A100 has no FP8: FP8 weights run at the BF16 rate; INT8 W8A8 uses its 624 TOP/s.
    assert a100.tensor_flops_s("fp8") == 312e12
    assert a100.tensor_flops_s("int8") == 624e12


def test_fp8_kv_cache_doubles_kv_blocks():
    model, gpu = CAT.model("llama-3-8b"), CAT.hardware("h100")
    bf16 = plan_memory(model, gpu, kv_bytes_per_elem=2)
    fp8 = plan_memory(model, gpu, kv_bytes_per_elem=1)
    assert fp8.kv_bytes_per_token_per_gpu == bf16.kv_bytes_per_token_per_gpu / 2
    assert fp8.num_kv_blocks in (2 * bf16.num_kv_blocks, 2 * bf16.num_kv_blocks + 1)


def test_int4_weights_take_a_quarter_of_bf16_memory():
    model, gpu = CAT.model("llama-3-70b"), CAT.hardware("h100")
    int4 = plan_memory(model, gpu, weight_bytes_per_param=0.5)
    assert int4.weight_bytes_per_gpu == pytest.approx(model.weight_bytes(2) / 4)
    # 70B in BF16 does not fit one H100; in INT4 it does.
    with pytest.raises(servesim.DeploymentError):
        plan_memory(model, gpu, weight_bytes_per_param=2)


def _scenario(**cluster):
    return {
        "workload": {
            "kind": "synthetic", "num_requests": 40,
            "arrival": {"process": "constant", "rate_rps": 2.0},
            "prompt_tokens": {"dist": "fixed", "value": 512},
            "output_tokens": {"dist": "fixed", "value": 64},
        },
        "cluster": {"model": "llama-3-8b", "hardware": "h100", **cluster},
    }


def test_scenario_dtypes_change_memory_and_speed():
    base = servesim.simulate(_scenario(engine="pytorch"))
    fp8 = servesim.simulate(_scenario(engine="pytorch", weight_dtype="fp8", kv_cache_dtype="fp8"))
    assert fp8.deployment.memory.num_kv_blocks > 2 * base.deployment.memory.num_kv_blocks
    # Decode streams half the weight bytes: faster tokens.
    assert fp8.summary["tpot_s"]["mean"] < 0.8 * base.summary["tpot_s"]["mean"]


def test_vllm_fp8_is_faster_by_what_its_kernels_measure():
    base = servesim.simulate(_scenario())
    fp8 = servesim.simulate(_scenario(weight_dtype="fp8", kv_cache_dtype="fp8"))
    # Half the weight bytes at the same streaming efficiency (0.85-0.87 in the kernel tables), but
    # the per-layer fixed costs, the KV reads' fixed parts and the host's work do not halve: decode
    # gets faster by less than the bytes say.
    ratio = fp8.summary["tpot_s"]["mean"] / base.summary["tpot_s"]["mean"]
    assert 0.6 < ratio < 0.8


def test_unknown_dtype_is_one_clear_line():
    with pytest.raises(servesim.ConfigError, match="cluster.weight_dtype = 'fp4'"):
        servesim.simulate(_scenario(weight_dtype="fp4"))


def test_int4_weight_only_gemms_run_at_the_bf16_rate():
    # A compute-bound prefill: INT4 (W4A16) is barely faster than BF16 (only the
    # bandwidth-bound lm_head row reads fewer bytes), while FP8 (W8A8) runs at
    # the doubled FP8 rate.
    from servesim.perf.batch_shape import BatchShape
    from servesim.perf.steptime import StepTimeModel

    model, gpu = CAT.model("llama-3-8b"), CAT.hardware("h100")
    shape = BatchShape.build(prefill_chunks=[(0, 8192)])

    def gemm_s(dtype):
        fmt = WEIGHT_FORMATS[dtype]
        m = StepTimeModel(model, gpu, weight_bytes_per_param=fmt.bytes_per_param, gemm_compute=fmt.compute)
        return m.breakdown(shape).gemm_s

    assert gemm_s("int4") == pytest.approx(gemm_s("bf16"), rel=0.01)
    assert gemm_s("fp8") == pytest.approx(gemm_s("bf16") / 2, rel=0.02)
