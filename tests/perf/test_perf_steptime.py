"""Step-time model: hand-computed components, the GEMM efficiency curve, eager versus
graphed steps, exact agreement of its three paths, and the defaults against the
measured H100 rows (when ../shared exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servesim.errors import ConfigError, DeploymentError
from servesim.perf import BatchShape, Catalog, StepTimeModel, StepTimeParams

CATALOG = Catalog.default()
H100 = CATALOG.hardware("h100")
LLAMA_8B = CATALOG.model("llama-3-8b")
PARAMS = StepTimeParams()
STEPS_CSV = Path(__file__).resolve().parents[2].parent / "shared" / "calibration" / "h100" / "llama-3-8b_steps.csv"

# Llama-3-8B linear weights per layer: fused QKV, O, gate/up/down.
LLAMA_8B_LINEAR = 32 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336)
LM_HEAD = 128256 * 4096


def decode_shape(batch: int, context: int) -> BatchShape:
    return BatchShape.build(decode_context_lens=[context] * batch)


# ------------------------------------------------------------- BatchShape
def test_build_counts_pairs_and_kv_tokens():
    shape = BatchShape.build(prefill_chunks=[(10, 4), (0, 3)], decode_context_lens=[7, 9])
    assert shape == BatchShape(
        num_tokens=4 + 3 + 2,
        num_seqs=4,
        num_prefill_seqs=2,
        prefill_attn_pairs=(4 * 10 + 4 * 5 // 2) + 3 * 4 // 2,
        prefill_kv_tokens=14 + 3,
        num_decode_seqs=2,
        decode_kv_tokens=16,
    )
    assert not shape.is_pure_decode
    with pytest.raises(ValueError):
        BatchShape.build(prefill_chunks=[(0, 0)])


# ------------------------------------------------------ hand-computed parts
def test_tp1_has_no_communication_and_empty_step_costs_nothing():
    model = StepTimeModel(LLAMA_8B, H100)
    assert model.breakdown(BatchShape.build([(0, 2048)], [100] * 8)).communication_s == 0.0
    assert model.time_s(BatchShape(0, 0, 0, 0, 0, 0, 0)) == 0.0


def test_decode_is_bounded_below_by_streaming_weights_and_kv():
    model = StepTimeModel(LLAMA_8B, H100)
    for batch, context in [(1, 512), (8, 2048), (64, 4096), (32, 8192)]:
        kv_bytes = batch * context * LLAMA_8B.kv_bytes_per_token(2)
        # Every weight but the embedding table (only a few rows are looked up)
        # and every cached KV byte cross the memory bus at most at peak rate.
        floor_s = (LLAMA_8B.weight_bytes(2) - 2 * LM_HEAD + kv_bytes) / H100.mem_bw_bytes_s
        assert model.time_s(decode_shape(batch, context)) > floor_s


def test_small_decode_gemm_streams_weights_at_derated_bandwidth():
    part = StepTimeModel(LLAMA_8B, H100).breakdown(decode_shape(1, 512))
    bw = 3350e9 * PARAMS.mem_bw_efficiency
    assert part.gemm_s == pytest.approx((LLAMA_8B_LINEAR + LM_HEAD) * 2 / bw, rel=1e-12)


def test_large_prefill_gemm_is_flops_over_peak_times_the_efficiency_at_its_rows():
    tokens = 8192
    part = StepTimeModel(LLAMA_8B, H100).breakdown(BatchShape.build([(0, tokens)]))
    # Efficiency at M rows: plateau * M / (M + half); 8192 rows are ~99% of the plateau.
    eff = PARAMS.gemm_efficiency * tokens / (tokens + PARAMS.gemm_half_tokens)
    # Linear layers compute-bound; the lm_head (one row) memory-bound.
    expected = 2 * tokens * LLAMA_8B_LINEAR / (989e12 * eff) + 2 * LM_HEAD / (3350e9 * PARAMS.mem_bw_efficiency)
    assert part.gemm_s == pytest.approx(expected, rel=1e-12)
    pairs = tokens * (tokens + 1) // 2
    attn_flops = 4 * 32 * 128 * pairs * 32
    assert part.attention_prefill_s == pytest.approx(attn_flops / (989e12 * PARAMS.attn_flops_efficiency), rel=1e-12)


def test_gemm_reaches_the_plateau_rate_on_very_long_prefills():
    params = StepTimeParams(gemm_efficiency=0.8, gemm_half_tokens=100)
    model = StepTimeModel(LLAMA_8B, H100, params=params)
    tokens = 10_000_000
    plateau = 2 * tokens * LLAMA_8B_LINEAR / (989e12 * 0.8)
    head = 2 * LM_HEAD / (3350e9 * params.mem_bw_efficiency)
    gemm = model.breakdown(BatchShape.build([(0, tokens)])).gemm_s - head
    assert gemm == pytest.approx(plateau * (tokens + 100) / tokens, rel=1e-12)
    assert gemm / plateau - 1 < 1e-4


def test_gemm_efficiency_rises_with_rows_and_saturates():
    """Achieved FLOP/s of the linear layers, 2 * params * M / time, over the rows M."""
    model = StepTimeModel(LLAMA_8B, H100)
    rows = [1, 8, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144]
    rates = []
    for m in rows:
        gemm = model.breakdown(BatchShape.build([(0, m)])).gemm_s
        rates.append(2 * m * (LLAMA_8B_LINEAR + LM_HEAD / m) / gemm)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    peak = 989e12 * PARAMS.gemm_efficiency
    assert rates[-1] < peak and rates[-1] > 0.99 * peak
    # One row streams every bf16 weight (2 bytes) for 2 FLOPs: one FLOP per byte of bandwidth.
    assert rates[0] == pytest.approx(3350e9 * PARAMS.mem_bw_efficiency, rel=1e-12)


def test_gemm_compute_format_picks_the_tensor_rate():
    shape = BatchShape.build([(0, 8192)])
    # int4 weight-only: half-byte weights, BF16 tensor rate.
    int4 = StepTimeModel(LLAMA_8B, H100, weight_bytes_per_param=0.5, gemm_compute="bf16").breakdown(shape)
    bf16 = StepTimeModel(LLAMA_8B, H100).breakdown(shape)
    fp8 = StepTimeModel(LLAMA_8B, H100, weight_bytes_per_param=1, gemm_compute="fp8").breakdown(shape)
    bw = 3350e9 * PARAMS.mem_bw_efficiency
    head = 2 * LM_HEAD / bw  # the lm_head's one row streams its weights ...
    # ... except in int4, where its padded rows (1 + gemm_half_tokens) outlast a quarter of the bytes.
    head_int4 = max(2 * LM_HEAD * (1 + PARAMS.gemm_half_tokens) / (989e12 * PARAMS.gemm_efficiency), head / 4)
    assert int4.gemm_s - head_int4 == pytest.approx(bf16.gemm_s - head, rel=1e-12)
    assert fp8.gemm_s - head / 2 == pytest.approx((bf16.gemm_s - head) * 989 / 1979, rel=1e-12)


def test_elementwise_traffic_streams_at_its_own_efficiency():
    part = StepTimeModel(LLAMA_8B, H100).breakdown(BatchShape.build([(0, 1000)]))
    # Per token and layer: 10 hidden-wide passes (norms, adds), rotary of q+k
    # (2 * 40 heads * 128), KV write (2 * 2048) and the gated activation (3 * 14336).
    elems = 10 * 4096 + 2 * 40 * 128 + 2 * 2048 + 3 * 14336
    expected = 1000 * 32 * elems * 2 / (3350e9 * PARAMS.elementwise_bw_efficiency)
    assert part.elementwise_s == pytest.approx(expected, rel=1e-12)


def test_doubling_decode_kv_changes_only_attention_decode():
    model = StepTimeModel(LLAMA_8B, H100)
    a = model.breakdown(decode_shape(16, 1000))
    b = model.breakdown(BatchShape(16, 16, 0, 0, 0, 16, 2 * 16000))
    assert b.attention_decode_s == 2 * a.attention_decode_s
    for name in ("gemm_s", "elementwise_s", "attention_prefill_s", "communication_s", "overhead_s"):
        assert getattr(a, name) == getattr(b, name), name
    per_token = LLAMA_8B.kv_bytes_per_token(2) / (3350e9 * PARAMS.attn_bw_efficiency)
    assert a.attention_decode_s == pytest.approx(16000 * per_token, rel=1e-12)


def test_tensor_and_pipeline_parallel_communication():
    shape = BatchShape.build([(0, 1024)])
    m70 = CATALOG.model("llama-3-70b")
    tp4 = StepTimeModel(m70, H100, tensor_parallel=4).breakdown(shape)
    bytes_per_allreduce = 1024 * 8192 * 2
    ring = 2 * 3 / 4 * bytes_per_allreduce / (450e9 * PARAMS.link_efficiency) + PARAMS.allreduce_latency_s
    assert tp4.communication_s == pytest.approx(2 * 80 * ring, rel=1e-12)
    pp2 = StepTimeModel(m70, H100, tensor_parallel=4, pipeline_parallel=2).breakdown(shape)
    send = bytes_per_allreduce / (450e9 * PARAMS.link_efficiency) + PARAMS.p2p_latency_s
    assert pp2.communication_s == pytest.approx(2 * 80 * ring + send, rel=1e-12)
    # Two nodes: the stage boundary crosses the network.
    pp2x8 = StepTimeModel(m70, H100, tensor_parallel=8, pipeline_parallel=2).breakdown(shape)
    ring8 = 2 * 7 / 8 * bytes_per_allreduce / (450e9 * PARAMS.link_efficiency) + PARAMS.allreduce_latency_s
    send_net = bytes_per_allreduce / (50e9 * PARAMS.link_efficiency) + PARAMS.p2p_latency_s
    assert pp2x8.communication_s == pytest.approx(2 * 80 * ring8 + send_net, rel=1e-12)


def test_pcie_only_gpus_all_reduce_over_pcie():
    shape = BatchShape.build([(0, 512)])
    l40s = StepTimeModel(LLAMA_8B, CATALOG.hardware("l40s"), tensor_parallel=2).breakdown(shape)
    ring = 512 * 4096 * 2 / (32e9 * PARAMS.link_efficiency) + PARAMS.allreduce_latency_s
    assert l40s.communication_s == pytest.approx(2 * 32 * ring, rel=1e-12)


def test_graphs_apply_only_to_pure_decode():
    model = StepTimeModel(LLAMA_8B, H100, cuda_graphs=True)
    assert model.breakdown(decode_shape(4, 100)).graphed
    assert model.breakdown(decode_shape(4, 100)).overhead_s == 32 * PARAMS.per_layer_overhead_s
    mixed = model.breakdown(BatchShape.build([(0, 16)], [100] * 4))
    assert not mixed.graphed
    assert not StepTimeModel(LLAMA_8B, H100, cuda_graphs=False).breakdown(decode_shape(4, 100)).graphed


def test_prefill_graph_buckets_replay_small_pure_prefill_steps():
    """LAPS's short-prefill CUDA graphs: a pure-prefill step of at most prefill_graph_tokens tokens
    pays only the graphed overhead (work + per-layer cost + fixed), however many prompts it holds;
    a larger one, or one with decodes, runs eager; without cuda_graphs nothing is graphed."""
    model = StepTimeModel(LLAMA_8B, H100, prefill_graph_tokens=256)
    eager = StepTimeModel(LLAMA_8B, H100)
    four_short = BatchShape.build([(0, 64)] * 4)
    part = model.breakdown(four_short)
    assert part.graphed
    graphed_overhead = 32 * PARAMS.per_layer_overhead_s + PARAMS.fixed_step_overhead_s
    assert model.time_s(four_short) == pytest.approx(_work_s(part) + graphed_overhead, rel=1e-12)
    # Eager, the same step launches four attention calls per layer from the CPU.
    assert eager.time_s(four_short) > model.time_s(four_short) + 32 * 4 * PARAMS.per_seq_attention_launch_s * 0.5
    assert not model.breakdown(BatchShape.build([(0, 257)])).graphed
    assert model.time_s(BatchShape.build([(0, 257)])) == eager.time_s(BatchShape.build([(0, 257)]))
    assert not model.breakdown(BatchShape.build([(0, 64)], [100])).graphed
    assert StepTimeModel(LLAMA_8B, H100, cuda_graphs=False, prefill_graph_tokens=256).prefill_graph_tokens == 0


def _work_s(part) -> float:
    return part.gemm_s + part.elementwise_s + part.attention_prefill_s + part.attention_decode_s + part.communication_s


def test_small_eager_steps_are_cpu_launch_bound_plus_the_unhidden_gpu_share():
    model = StepTimeModel(LLAMA_8B, H100, cuda_graphs=False)
    exposed = 1 - PARAMS.cpu_gpu_overlap
    shape = decode_shape(1, 512)
    cpu = 32 * (PARAMS.per_layer_launch_eager_s + PARAMS.per_seq_attention_launch_s)
    gpu = _work_s(model.breakdown(shape)) + 32 * PARAMS.per_layer_overhead_s
    assert cpu > gpu
    assert model.time_s(shape) == pytest.approx(cpu + exposed * gpu, rel=1e-12)
    # Each prefill sequence makes its own attention call; decodes share one.
    shape = BatchShape.build([(0, 8), (0, 8)], [50] * 4)
    three_calls = 32 * (PARAMS.per_layer_launch_eager_s + 3 * PARAMS.per_seq_attention_launch_s)
    gpu = _work_s(model.breakdown(shape)) + 32 * PARAMS.per_layer_overhead_s
    assert model.time_s(shape) == pytest.approx(three_calls + exposed * gpu, rel=1e-12)


def test_large_eager_steps_are_gpu_bound_plus_the_unhidden_cpu_share():
    model = StepTimeModel(LLAMA_8B, H100, cuda_graphs=False)
    part = model.breakdown(BatchShape.build([(0, 8192)]))
    cpu = 32 * (PARAMS.per_layer_launch_eager_s + PARAMS.per_seq_attention_launch_s)
    assert part.overhead_s == pytest.approx(32 * PARAMS.per_layer_overhead_s + (1 - PARAMS.cpu_gpu_overlap) * cpu, rel=1e-12)


@pytest.mark.parametrize("batch, context", [(1, 512), (16, 2048), (64, 4096), (256, 8192)])
def test_eager_decode_is_never_faster_than_graphed(batch, context):
    shape = decode_shape(batch, context)
    graphed = StepTimeModel(LLAMA_8B, H100, cuda_graphs=True).time_s(shape)
    eager = StepTimeModel(LLAMA_8B, H100, cuda_graphs=False).time_s(shape)
    assert eager > graphed


def test_moe_reads_only_the_experts_a_batch_touches():
    mixtral = CATALOG.model("mixtral-8x7b")
    model = StepTimeModel(mixtral, H100, tensor_parallel=2)
    bw = 3350e9 * PARAMS.mem_bw_efficiency
    dense = (32 * mixtral.attention_linear_params + 32 * mixtral.router_params) / 2
    expert = 32 * mixtral.expert_params / 2
    head = 32000 * 4096 / 2
    # One token touches exactly k=2 experts.
    one = model.breakdown(decode_shape(1, 10)).gemm_s
    assert one == pytest.approx((dense + 2 * expert + head) * 2 / bw, rel=1e-12)
    # 64 tokens touch nearly all 8 experts (memory side of each roofline).
    touched = 8 * (1 - (1 - 2 / 8) ** 64)
    half = PARAMS.gemm_half_tokens
    dense_s = max((64 + half) * 2 * dense / (989e12 * PARAMS.gemm_efficiency), dense * 2 / bw)
    expected = dense_s + touched * expert * 2 / bw + head * 2 / bw
    assert model.breakdown(decode_shape(64, 10)).gemm_s == pytest.approx(expected, rel=1e-12)


def test_mla_decode_attention_uses_the_larger_of_bytes_and_flops():
    ds = CATALOG.model("deepseek-v3")
    model = StepTimeModel(ds, CATALOG.hardware("h200"), tensor_parallel=8, weight_bytes_per_param=1)
    part = model.breakdown(decode_shape(8, 4096))
    kv_s = 61 * 576 * 2 / (4800e9 * PARAMS.attn_bw_efficiency)  # replicated latent, read by every rank
    flop_s = 61 * 2 * 128 * (576 + 512) / 8 / (989e12 * PARAMS.attn_flops_efficiency)
    assert part.attention_decode_s == pytest.approx(8 * 4096 * max(kv_s, flop_s), rel=1e-12)


def test_invalid_setups_raise_servesim_errors():
    with pytest.raises(DeploymentError):
        StepTimeModel(CATALOG.model("qwen2.5-7b"), H100, tensor_parallel=8)
    with pytest.raises(ConfigError):
        StepTimeModel(LLAMA_8B, H100, tensor_parallel=0)
    with pytest.raises(ConfigError):
        StepTimeModel(LLAMA_8B, H100, kv_bytes_per_elem=0)


def test_params_are_frozen_validated_and_documented():
    with pytest.raises(ValidationError):
        StepTimeParams(gemm_efficiency=1.5)
    with pytest.raises(ValidationError):
        StepTimeParams(gemm_efficency=0.5)  # typo: extra fields are forbidden
    with pytest.raises(ValidationError):
        PARAMS.gemm_efficiency = 0.5  # type: ignore[misc]
    for name, field in StepTimeParams.model_fields.items():
        assert field.description, name


# ------------------------------------------- the three paths agree exactly
MODELS = [
    StepTimeModel(LLAMA_8B, H100, cuda_graphs=True),
    StepTimeModel(LLAMA_8B, H100, cuda_graphs=False),
    StepTimeModel(CATALOG.model("llama-3-70b"), H100, tensor_parallel=4, pipeline_parallel=2),
    StepTimeModel(CATALOG.model("mixtral-8x7b"), H100, tensor_parallel=2, cuda_graphs=False),
    StepTimeModel(CATALOG.model("mixtral-8x7b"), CATALOG.hardware("l40s"), tensor_parallel=4),
    StepTimeModel(CATALOG.model("deepseek-v3"), CATALOG.hardware("h200"), 8, 1, None, True, 1),
    StepTimeModel(CATALOG.model("deepseek-v3"), CATALOG.hardware("h200"), 8, 1, StepTimeParams(fixed_step_overhead_s=1e-3), False, 1),
]

shapes = st.builds(
    BatchShape.build,
    st.lists(st.tuples(st.integers(0, 20000), st.integers(1, 8192)), max_size=6),
    st.lists(st.integers(1, 100000), max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(shape=shapes, which=st.integers(0, len(MODELS) - 1))
def test_breakdown_total_equals_time_s_exactly(shape, which):
    model = MODELS[which]
    part = model.breakdown(shape)
    assert part.total_s == model.time_s(shape)
    assert part.total_s == (
        part.gemm_s + part.elementwise_s + part.attention_prefill_s + part.attention_decode_s
        + part.communication_s + part.overhead_s
    )
    assert min(part.gemm_s, part.attention_prefill_s, part.attention_decode_s, part.overhead_s) >= 0


@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("batch", [1, 2, 7, 64, 256, 1024])
def test_decode_times_s_equals_time_s_bit_for_bit(model, batch):
    rng = np.random.default_rng(batch)
    kv = np.concatenate([
        np.array([batch, batch + 1, 10 * batch]),
        rng.integers(batch, batch * 131072, size=500),
        batch * 512 + batch * np.arange(200),  # a decode stretch, as the replica builds it
    ]).astype(np.int64)
    times = model.decode_times_s(batch, kv)
    assert times.dtype == np.float64 and times.shape == kv.shape
    expected = [model.time_s(BatchShape(batch, batch, 0, 0, 0, batch, int(k))) for k in kv]
    assert times.tolist() == expected


@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("batch", [1, 2, 7, 64, 256, 1024])
def test_scalar_decode_time_s_equals_time_s_bit_for_bit(model, batch):
    # The replica prices decode stretches with the scalar path, one step at a time.
    rng = np.random.default_rng(batch + 7)
    for kv in [batch, batch + 1, *rng.integers(batch, batch * 131072, size=300).tolist()]:
        assert model.decode_time_s(batch, kv) == model.time_s(BatchShape(batch, batch, 0, 0, 0, batch, kv))
    assert model.decode_time_s(0, 0) == 0.0


def test_decode_times_s_of_no_sequences_is_zero():
    assert StepTimeModel(LLAMA_8B, H100).decode_times_s(0, np.array([0, 0])).tolist() == [0.0, 0.0]


# -------------------------------------------- sanity against measured rows
@pytest.mark.skipif(not STEPS_CSV.exists(), reason="../shared calibration data not present")
def test_h100_rows_within_ten_percent_with_default_params():
    """The defaults are the H100 calibration: every row within 10%.  Prints the table (pytest -s)."""
    from servesim.perf.steppricer import StepPricer
    from servesim.perf.steprows import read_steps_csv
    from servesim.perf.validate import error_slices, format_error_table

    rows = read_steps_csv(STEPS_CSV, require_measured=True).rows
    predicted = StepPricer(rows, H100, CATALOG).times_s()
    print("\n" + format_error_table(error_slices(rows, predicted)))
    for row, pred in zip(rows, predicted):
        assert abs(pred / row.measured_s - 1) < 0.10, row.label()
