"""Per-kernel models fitted to vLLM's measured kernels: formulas, recovery of known parameters, packaged values."""

from __future__ import annotations

from dataclasses import astuple, fields
from pathlib import Path

import numpy as np
import pytest

from servesim.errors import ConfigError
from servesim.perf.catalog import Catalog
from servesim.perf.kernel_fit import (
    Family,
    allreduce_time_s,
    decode_attention_time_s,
    fit_all,
    fit_family,
    gemm_time_s,
    load_table,
    moe_time_s,
    predict,
    prefill_attention_time_s,
)
from servesim.perf.kernel_params import (
    AllReduceParams,
    DecodeAttentionParams,
    GemmParams,
    MoeParams,
    PrefillAttentionParams,
    load_kernel_params,
)

KERNELS = Path(__file__).resolve().parents[2].parent / "shared" / "kernels" / "vllm"
H100 = Catalog.default().hardware("h100")

GEMM = GemmParams(efficiency=0.8, half_tokens=64.0, bw_efficiency=0.9, latency_s=5e-6)
DECODE = DecodeAttentionParams(latency_s=10e-6, per_seq_s=0.1e-6, bw_efficiency=0.8, flops_efficiency=1.0)
PREFILL = PrefillAttentionParams(latency_s=12e-6, per_seq_s=0.5e-6, flops_efficiency=0.5, half_tokens=1024.0)
ALLREDUCE = AllReduceParams(latency_s=((2, 4e-6), (4, 5e-6), (8, 6e-6)), link_efficiency=0.6)
MOE = MoeParams(efficiency=0.3, half_tokens=50.0, bw_efficiency=0.8, latency_s=30e-6)


# ------------------------------------------------------------------ formulas, one shape each by hand
def test_gemm_compute_bound_shape():
    # 4096 x 4096 x 4096 bf16 on H100: 2*4096^2*(4096+64) FLOPs at 0.8 * 989e12
    expected = 2 * 4096 * 4096 * 4160 / (0.8 * 989e12) + 5e-6
    assert gemm_time_s(4096, 4096, 4096, 2, 989e12, 3350e9, GEMM) == pytest.approx(expected, rel=1e-12)


def test_gemm_memory_bound_shape():
    # m = 1: the 8192 x 8192 bf16 weight plus activations at 0.9 * 3.35 TB/s
    expected = (8192 * 8192 * 2 + 2 * (8192 + 8192)) / (0.9 * 3350e9) + 5e-6
    assert gemm_time_s(1, 8192, 8192, 2, 989e12, 3350e9, GEMM) == pytest.approx(expected, rel=1e-12)


def test_decode_attention_shape():
    # 16 sequences x 4096 tokens, 8 KV heads of 128, bf16 KV
    expected = 10e-6 + 16 * 0.1e-6 + 16 * 4096 * 2 * 8 * 128 * 2 / (0.8 * 3350e9)
    got = decode_attention_time_s(16, 4096, 32, 8, 128, 2, 989e12, 3350e9, DECODE)
    assert got == pytest.approx(expected, rel=1e-12)


def test_decode_attention_flop_roof_binds_when_efficiency_is_low():
    low = DecodeAttentionParams(10e-6, 0.0, 0.8, 0.01)
    expected = 10e-6 + 4096 * 64 * 128 * 4 / (0.01 * 989e12)
    assert decode_attention_time_s(1, 4096, 64, 1, 128, 2, 989e12, 3350e9, low) == pytest.approx(expected, rel=1e-12)


def test_prefill_attention_shape():
    # 2 prompts of 1024 tokens, 32 heads of 128: 1024*1025/2 causal pairs each, at half the plateau
    # (1024-token prompts with half_tokens 1024)
    expected = 12e-6 + 2 * 0.5e-6 + 2 * (1024 * 1025 / 2) * 4 * 32 * 128 / (0.5 * 0.5 * 989e12)
    assert prefill_attention_time_s(2, 1024, 32, 128, 989e12, PREFILL) == pytest.approx(expected, rel=1e-12)


def test_allreduce_shape():
    # 1 Mi bf16 elements over 8 GPUs
    nbytes = 2 * 2**20
    expected = 6e-6 + 2 * 7 / 8 * nbytes / (0.6 * 450e9)
    assert allreduce_time_s(nbytes, 8, 450e9, ALLREDUCE) == pytest.approx(expected, rel=1e-12)
    assert ALLREDUCE.latency_for(16) == 6e-6 and ALLREDUCE.latency_for(3) in (4e-6, 5e-6)


def test_moe_shape():
    # 256 tokens, top-8 of 128 experts, hidden 4096, inter 1536, tp 1, ep 2, bf16
    n_t = 64 * (1 - (1 - 8 / 128) ** 256)
    p_e = 3 * 4096 * 1536
    compute = 2 * p_e * (8 * 256 / 2 + n_t * 50) / (989e12 * 0.3)
    traffic = n_t * p_e * 2 / (3350e9 * 0.8)
    expected = 30e-6 + max(compute, traffic)
    got = moe_time_s(256, 4096, 1536, 8, 128, 1, 2, 2, 989e12, 3350e9, MOE)
    assert got == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------ fits recover known parameters
def _synthetic(family: str, dtype: str, rows: dict[str, np.ndarray], params) -> Family:
    rows = {k: np.asarray(v, dtype=float) for k, v in rows.items()}
    return Family(rows, predict(family, dtype, rows, H100, params), "synthetic")


def _grid(**axes):
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    return {name: m.ravel() for name, m in zip(axes, mesh, strict=True)}


def _assert_recovered(got, want, rel=0.02):
    for f in fields(want):
        assert getattr(got, f.name) == pytest.approx(getattr(want, f.name), rel=rel), f.name


def test_fit_recovers_gemm():
    rows = _grid(m=[1, 4, 16, 64, 128, 256, 1024, 4096, 16384], n=[1024, 4096, 16384], k=[1024, 8192, 65536])
    want = GemmParams(efficiency=0.75, half_tokens=90.0, bw_efficiency=0.85, latency_s=7e-6)
    _assert_recovered(fit_family("gemm", "bf16", _synthetic("gemm", "bf16", rows, want), H100), want)


def test_fit_recovers_decode_attention():
    rows = _grid(batch_size=[1, 8, 64, 512], isl=[1], step=[1, 255, 4095, 65535], num_heads=[32, 64],
                 num_key_value_heads=[1, 8], head_dim=[128])  # fmt: skip
    want = DecodeAttentionParams(latency_s=12e-6, per_seq_s=0.06e-6, bw_efficiency=0.75, flops_efficiency=1.0)
    got = fit_family("decode_attention", "bf16", _synthetic("decode_attention", "bf16", rows, want), H100)
    _assert_recovered(got, DecodeAttentionParams(*astuple(want)[:3], got.flops_efficiency))


def test_fit_recovers_prefill_attention():
    rows = _grid(batch_size=[1, 4, 32, 256], isl=[1, 64, 512, 4096, 16384], num_heads=[8, 64], head_dim=[128])
    want = PrefillAttentionParams(latency_s=14e-6, per_seq_s=0.4e-6, flops_efficiency=0.45, half_tokens=800.0)
    got = fit_family("prefill_attention", "bf16", _synthetic("prefill_attention", "bf16", rows, want), H100)
    _assert_recovered(got, want)


def test_fit_recovers_allreduce():
    rows = _grid(num_gpus=[2, 4, 8], message_size=2.0 ** np.arange(7, 26))
    got = fit_family("allreduce", "bf16", _synthetic("allreduce", "bf16", rows, ALLREDUCE), H100)
    assert got.link_efficiency == pytest.approx(0.6, rel=0.02)
    for (n, want), (m, value) in zip(ALLREDUCE.latency_s, got.latency_s, strict=True):
        assert n == m and value == pytest.approx(want, rel=0.02)


def test_fit_recovers_moe():
    rows = _grid(num_tokens=[1, 16, 128, 1024, 8192], hidden_size=[4096], inter_size=[1536, 14336], topk=[2, 8],
                 num_experts=[8, 128], moe_tp_size=[1, 4], moe_ep_size=[1, 8])  # fmt: skip
    keep = rows["num_experts"] >= rows["moe_ep_size"]
    rows = {k: v[keep] for k, v in rows.items()}
    _assert_recovered(fit_family("moe", "fp8", _synthetic("moe", "fp8", rows, MOE), H100), MOE)


# ------------------------------------------------------------------ tables and the packaged values
def test_missing_gpu_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="h100_sxm"):
        load_table(tmp_path, "h100", "gemm", "gemm_perf")


def test_packaged_h100_values_are_physical():
    kp = load_kernel_params("h100")
    assert kp is not None and set(kp.gemm) >= {"bf16", "fp8"} and set(kp.decode_attention) == {"bf16", "fp8"}
    efficiencies = [kp.prefill_attention.flops_efficiency, kp.allreduce.link_efficiency]
    efficiencies += [p.efficiency for p in (*kp.gemm.values(), *kp.moe.values())]
    efficiencies += [p.bw_efficiency for p in (*kp.gemm.values(), *kp.moe.values(), *kp.decode_attention.values())]
    assert all(0 < e <= 1 for e in efficiencies)
    times = [p.latency_s for p in (*kp.gemm.values(), *kp.moe.values(), *kp.decode_attention.values())]
    times += [s for _, s in kp.allreduce.latency_s]
    assert all(0 <= t < 1e-3 for t in times)  # kernel fixed costs are microseconds
    assert kp.gemm["bf16"].efficiency > 0.5 and 0 <= kp.gemm["bf16"].half_tokens < 1000


def test_gpu_without_tables_and_missing_dtype():
    assert load_kernel_params("no-such-gpu") is None
    a100 = load_kernel_params("a100")
    assert a100 is not None and "fp8" not in a100.gemm and not a100.moe  # no FP8 on Ampere; no balanced MoE rows


@pytest.fixture(scope="module")
def fresh_fit():
    if not KERNELS.is_dir():
        pytest.skip("../shared/kernels not present")
    return fit_all(KERNELS)


def _close(a: float, b: float, name: str = "") -> bool:
    # the YAML keeps 4 significant digits; a half_tokens fitted onto its bound 0 is ~1e-9 and may move a little
    return abs(a - b) <= 1e-3 * max(abs(a), abs(b)) + (1e-3 if name == "half_tokens" else 1e-12)


def test_packaged_yaml_matches_a_fresh_fit(fresh_fit):
    for gpu in ("a100", "h100", "h200", "b200"):
        packaged, fresh = load_kernel_params(gpu), fresh_fit.kernel_params(gpu)
        for family in ("gemm", "decode_attention", "moe"):
            assert set(getattr(packaged, family)) == set(getattr(fresh, family)), (gpu, family)
            for dtype, params in getattr(fresh, family).items():
                for name, value in zip((f.name for f in fields(params)), astuple(params), strict=True):
                    assert _close(getattr(getattr(packaged, family)[dtype], name), value, name), (gpu, family, dtype, name)
        for a, b in zip(astuple(packaged.prefill_attention), astuple(fresh.prefill_attention), strict=True):
            assert _close(a, b), (gpu, "prefill_attention")
        assert _close(packaged.allreduce.link_efficiency, fresh.allreduce.link_efficiency)


def test_fresh_fit_errors(fresh_fit):
    # thresholds a few points above what the fit reaches (median APE, %; see the YAML's errors)
    limits = {("gemm", "bf16"): 10, ("decode_attention", "bf16"): 25, ("prefill_attention", "bf16"): 35,
              ("allreduce", "bf16"): 15, ("moe", "bf16"): 25}  # fmt: skip
    for (gpu, family, dtype), fit in fresh_fit.fits.items():
        if (family, dtype) in limits and fit.in_sample is not None:
            assert fit.in_sample.median < limits[(family, dtype)], (gpu, family, dtype, fit.in_sample)
