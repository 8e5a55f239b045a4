"""Engine models: vLLM's CUDA-graph capture sizes and padding, piecewise graphs, the host's work
overlapped by asynchronous scheduling, `vllm serve`'s defaults, and the engine's parameters."""

from __future__ import annotations

import pytest

from servesim.config import ScenarioConfig
from servesim.deployment import build_deployment, with_engine_defaults
from servesim.perf import BatchShape, Catalog, StepTimeModel, StepTimeParams
from servesim.perf.engines import VLLM_HOST, engine_profile, engine_step_params, scheduler_defaults
from servesim.perf.steptime import _combine, capture_padding, capture_sizes

CATALOG = Catalog.default()
H100 = CATALOG.hardware("h100")
LLAMA_8B = CATALOG.model("llama-3-8b")


def decode(n: int, context: int = 100) -> BatchShape:
    return BatchShape.build(decode_context_lens=[context] * n)


def piecewise(params: StepTimeParams | None = None, max_graph_tokens: int = 512, async_scheduling: bool = True):
    return StepTimeModel(LLAMA_8B, H100, params=params, graph_mode="piecewise", max_graph_tokens=max_graph_tokens,
                         async_scheduling=async_scheduling)


# ------------------------------------------------------------ capture sizes
def test_capture_sizes_are_vllms_default_list():
    sizes = capture_sizes(512)
    assert sizes[:5] == [1, 2, 4, 8, 16]
    assert sizes[-3:] == [480, 496, 512]
    assert 248 in sizes and 256 in sizes and 264 not in sizes and 272 in sizes
    assert len(sizes) == 3 + 31 + 17  # [1, 2, 4] + 8..248 by 8 + 256..512 by 16


def test_padding_rounds_up_to_the_next_capture_size():
    pad = capture_padding(512)
    assert (pad[1], pad[3], pad[5], pad[9], pad[250], pad[257], pad[512]) == (1, 4, 8, 16, 256, 272, 512)
    # A cap that is not a capture size is captured too (vLLM ends the list at the cap).
    assert capture_padding(20)[17:] == [20, 20, 20, 20]


# ---------------------------------------------------------- piecewise steps
def test_a_padded_decode_does_the_gemm_work_of_its_capture_size():
    model = piecewise()
    three, four = model.breakdown(decode(3)), model.breakdown(decode(4))
    # GEMM rows and elementwise traffic are those of 4 tokens; only the lm_head sees 3 rows.
    assert three.elementwise_s == four.elementwise_s
    assert three.graphed and four.graphed
    eager = StepTimeModel(LLAMA_8B, H100).breakdown(decode(4))  # same parameters, no padding
    assert four.gemm_s == eager.gemm_s


def test_steps_above_the_largest_capture_size_run_eager_unpadded():
    model = piecewise(max_graph_tokens=16)
    assert model.breakdown(decode(16)).graphed
    big = model.breakdown(BatchShape.build(prefill_chunks=[(0, 40)]))
    assert not big.graphed


def test_host_bound_steps_take_the_host_time_under_async_scheduling():
    # A GPU with almost nothing to do and a slow host: the step is the host's work alone.
    p = StepTimeParams(fixed_step_overhead_s=0.05, per_seq_step_overhead_s=0.001)
    model = piecewise(p)
    assert model.time_s(decode(8)) == 0.05 + 8 * 0.001
    # Without asynchronous scheduling the host's work adds to the GPU's.
    sync = piecewise(p, async_scheduling=False)
    gpu = piecewise(StepTimeParams(fixed_step_overhead_s=0.0, per_seq_step_overhead_s=0.0)).time_s(decode(8))
    assert sync.time_s(decode(8)) == pytest.approx(gpu + 0.05 + 8 * 0.001, rel=1e-12)


def test_combine_rule():
    assert _combine(10.0, 3.0, 2.0, True) == 10.0  # the GPU hides the host
    assert _combine(4.0, 3.0, 2.0, True) == 5.0  # the host is the bottleneck
    assert _combine(4.0, 3.0, 2.0, False) == 7.0  # scheduling first, launches overlap the GPU
    assert _combine(1.0, 3.0, 2.0, False) == 5.0


def test_mixed_steps_pay_piecewise_launches_and_decode_steps_do_not():
    p = StepTimeParams(fixed_step_overhead_s=0.0, per_seq_step_overhead_s=0.0, piecewise_launch_s=1e-3)
    model = piecewise(p)
    mixed = BatchShape.build(prefill_chunks=[(0, 8)], decode_context_lens=[100])
    # 32 layers x 1 ms of host launches exceed the GPU's work for 9 tokens: the step is host-bound.
    assert model.time_s(mixed) == 32 * 1e-3
    assert model.time_s(decode(9)) < 32 * 1e-3


@pytest.mark.parametrize("async_scheduling", [True, False])
@pytest.mark.parametrize("max_graph_tokens", [512, 64])
def test_decode_time_equals_time_s_bit_for_bit(async_scheduling, max_graph_tokens):
    model = piecewise(max_graph_tokens=max_graph_tokens, async_scheduling=async_scheduling)
    for n in (1, 3, 7, 8, 63, 64, 65, 200, 300):
        for context in (1, 100, 4000):
            assert model.decode_time_s(n, n * context) == model.time_s(decode(n, context))
            assert model.breakdown(decode(n, context)).total_s == model.time_s(decode(n, context))


def test_piecewise_needs_cuda_graphs():
    with pytest.raises(Exception, match="piecewise"):
        StepTimeModel(LLAMA_8B, H100, graph_mode="piecewise", cuda_graphs=False)


# --------------------------------------------------------------- defaults
def test_vllm_serve_defaults_by_gpu_memory():
    assert scheduler_defaults("vllm", CATALOG.hardware("h100")) == (1024, 8192)
    assert scheduler_defaults("vllm", CATALOG.hardware("h200")) == (1024, 8192)
    assert scheduler_defaults("vllm", CATALOG.hardware("b200")) == (1024, 16384)
    assert scheduler_defaults("vllm", CATALOG.hardware("a100")) == (256, 2048)  # the A100 exception
    assert scheduler_defaults("vllm", CATALOG.hardware("l4")) == (256, 2048)
    assert scheduler_defaults("pytorch", CATALOG.hardware("h100")) == (256, 8192)


def test_profiles():
    vllm = engine_profile("vllm", "0.15.1", max_num_seqs=128)
    assert (vllm.graph_mode, vllm.async_scheduling, vllm.prefix_caching, vllm.max_graph_tokens) == (
        "piecewise", True, True, 256)
    assert not engine_profile("vllm", "0.13.0").async_scheduling  # before v0.14: synchronous
    assert engine_profile("vllm").max_graph_tokens == 512
    torch = engine_profile("pytorch")
    assert (torch.graph_mode, torch.async_scheduling, torch.prefix_caching) == ("decode", False, False)


def test_scenario_resolves_unset_limits_and_keeps_set_ones():
    config = ScenarioConfig.model_validate({"cluster": {"hardware": "a100"}, "scheduler": {"max_num_seqs": 64}})
    resolved = with_engine_defaults(config)
    assert (resolved.scheduler.max_num_seqs, resolved.scheduler.max_num_batched_tokens) == (64, 2048)
    assert with_engine_defaults(resolved) is resolved  # idempotent
    torch = ScenarioConfig.model_validate({"cluster": {"engine": "pytorch"}})
    assert with_engine_defaults(torch).scheduler.max_num_batched_tokens == 8192
    assert torch.cluster.prefix_caching is False
    assert ScenarioConfig().cluster.prefix_caching is True  # vLLM's default


def test_vllm_parameters_come_from_the_kernel_fits_and_explicit_fields_win():
    from servesim.perf.kernel_params import load_kernel_params

    kernels = load_kernel_params("h100")
    vllm = engine_profile("vllm")
    params = engine_step_params(vllm, H100, "bf16", "bf16", 1, StepTimeParams())
    assert params.gemm_efficiency == kernels.gemm["bf16"].efficiency
    assert params.attn_bw_efficiency == kernels.decode_attention["bf16"].bw_efficiency
    assert params.fixed_step_overhead_s == VLLM_HOST["fixed_step_overhead_s"]
    launches = 4 * kernels.gemm["bf16"].latency_s + kernels.decode_attention["bf16"].latency_s
    assert params.per_layer_overhead_s == pytest.approx(launches + VLLM_HOST["glue_per_layer_s"])
    fp8 = engine_step_params(vllm, H100, "fp8", "fp8", 4, StepTimeParams())
    assert fp8.gemm_efficiency == kernels.gemm["fp8"].efficiency
    assert fp8.allreduce_latency_s == kernels.allreduce.latency_for(4)
    mine = engine_step_params(vllm, H100, "bf16", "bf16", 1, StepTimeParams(gemm_efficiency=0.5))
    assert mine.gemm_efficiency == 0.5
    # The plain harness keeps servesim's H100 calibration as it was.
    assert engine_step_params(engine_profile("pytorch"), H100, "bf16", "bf16", 1, StepTimeParams()) == StepTimeParams()


def test_deployment_builds_the_engines_step_model():
    vllm = build_deployment(ScenarioConfig())
    assert vllm.step_model.piecewise and vllm.async_scheduling
    assert vllm.frontend_latency_s == VLLM_HOST["frontend_latency_s"]
    torch = build_deployment(ScenarioConfig.model_validate({"cluster": {"engine": "pytorch"}}))
    assert not torch.step_model.piecewise and not torch.async_scheduling and torch.frontend_latency_s == 0.0


def test_prefill_attention_efficiency_grows_with_the_chunk_length():
    flat = piecewise(StepTimeParams(attn_prefill_half_tokens=0.0))
    ramp = piecewise(StepTimeParams(attn_prefill_half_tokens=1000.0))
    long_chunk = BatchShape.build(prefill_chunks=[(0, 512)])
    # 512-token chunks run at 512 / (512 + 1000) of the plateau: their pairs cost 1 + 1000/512 times more.
    assert ramp.breakdown(long_chunk).attention_prefill_s == pytest.approx(
        flat.breakdown(long_chunk).attention_prefill_s * (1 + 1000 / 512), rel=1e-12)
    # A 15-token chunk after 576 cached tokens pays for a whole 128-row query tile.
    short = BatchShape.build(prefill_chunks=[(576, 15), (576, 15)], decode_context_lens=[100] * 4)
    pairs_s = short.prefill_attn_pairs * flat._pair_s
    assert ramp._prefill_pairs_s(short) == pytest.approx(pairs_s * (1 + 1000 / 128), rel=1e-12)
    # The plain harness's steps price it the same way when it is set (its calibration leaves it 0).
    harness = StepTimeModel(LLAMA_8B, H100, params=StepTimeParams(attn_prefill_half_tokens=1000.0))
    assert harness.breakdown(long_chunk).attention_prefill_s == pytest.approx(
        StepTimeModel(LLAMA_8B, H100).breakdown(long_chunk).attention_prefill_s * (1 + 1000 / 512), rel=1e-12)
    assert harness.time_s(long_chunk) == harness.breakdown(long_chunk).total_s


def test_an_engine_version_that_is_not_a_version_is_refused():
    from servesim.config import validate_config
    from servesim.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cluster.engine_version = 'abc'"):
        validate_config({"cluster": {"engine_version": "abc"}})  # would have read as 0.0: no async scheduling
    for ok in ("0.15.1", "v0.14", "0.15.1rc1", "0.16.0+cu128"):
        assert validate_config({"cluster": {"engine_version": ok}}).cluster.engine_version == ok
