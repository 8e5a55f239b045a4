"""Catalog: packaged entries, derived sizes, user overrides and error messages."""

from __future__ import annotations

import pytest

from servesim.errors import CatalogError
from servesim.perf import Catalog, HardwareSpec, ModelSpec

CATALOG = Catalog.default()

MODEL_IDS = (
    "llama-3-8b", "llama-3-70b", "llama-3.1-405b", "qwen2.5-7b", "qwen2.5-72b",
    "mistral-7b", "mixtral-8x7b", "deepseek-v3", "llama-2-7b", "llama-2-70b", "codellama-34b", "llama-3.1-8b",
    "llama-3.1-70b", "llama-3.3-70b", "qwen3-8b", "qwen3-32b", "qwen3-30b-a3b", "deepseek-r1",
)
HARDWARE_IDS = ("a100", "h100", "h200", "b200", "l4", "l40s", "mi300x", "cpu-core")

# Published totals (model cards / papers), billions of parameters: (total, active, rel. tolerance).
PUBLISHED = {
    "llama-3-8b": (8.0, 8.0, 0.01),
    "llama-3-70b": (70.6, 70.6, 0.01),
    "llama-3.1-405b": (405.0, 405.0, 0.01),
    "qwen2.5-7b": (7.61, 7.61, 0.01),
    "qwen2.5-72b": (72.7, 72.7, 0.01),
    "mistral-7b": (7.24, 7.24, 0.01),
    "mixtral-8x7b": (46.7, 12.9, 0.01),
    "deepseek-v3": (671.0, 37.0, 0.02),
    "llama-2-7b": (6.74, 6.74, 0.01),
    "llama-2-70b": (69.0, 69.0, 0.01),
    "codellama-34b": (33.7, 33.7, 0.01),
    "llama-3.1-8b": (8.03, 8.03, 0.01),
    "llama-3.1-70b": (70.6, 70.6, 0.01),
    "llama-3.3-70b": (70.6, 70.6, 0.01),
    "qwen3-8b": (8.2, 8.2, 0.01),
    "qwen3-32b": (32.8, 32.8, 0.01),
    "qwen3-30b-a3b": (30.5, 3.3, 0.02),
    "deepseek-r1": (671.0, 37.0, 0.02),
}


def test_default_catalog_lists_every_packaged_id_in_file_order():
    assert CATALOG.model_ids == MODEL_IDS
    assert CATALOG.hardware_ids == HARDWARE_IDS


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_computed_parameter_counts_match_published_totals(model_id):
    total, active, tol = PUBLISHED[model_id]
    spec = CATALOG.model(model_id)
    assert spec.num_params / 1e9 == pytest.approx(total, rel=tol)
    assert spec.num_active_params / 1e9 == pytest.approx(active, rel=tol)


def test_llama_3_8b_sizes_by_hand():
    m = CATALOG.model("llama-3-8b")
    per_layer = 4096 * (4096 + 2 * 1024) + 4096 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    assert m.num_params == 32 * per_layer + 2 * 128256 * 4096 + 4096
    assert m.weight_bytes(2) == 2 * m.num_params
    assert m.kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2 == 131072


def test_kv_bytes_per_token_for_mha_and_mla():
    assert CATALOG.model("llama-2-7b").kv_bytes_per_token(2) == 2 * 32 * 32 * 128 * 2
    # MLA caches one 512-wide latent plus the 64-wide shared rotary key per layer.
    assert CATALOG.model("deepseek-v3").kv_bytes_per_token(2) == 61 * (512 + 64) * 2
    assert CATALOG.model("deepseek-v3").kv_bytes_per_token(1) == 61 * 576


def test_moe_layout_of_deepseek_v3():
    m = CATALOG.model("deepseek-v3")
    assert (m.num_dense_layers, m.num_moe_layers) == (3, 58)
    assert m.expert_params == 3 * 7168 * 2048
    assert m.mlp_width_per_token == 18432  # 9 experts x 2048 == the dense width
    assert m.decode_attention_flops_per_kv_token == 2 * 128 * (576 + 512)


def test_hardware_figures_and_units():
    h200 = CATALOG.hardware("h200")
    assert h200.memory_gb == 141 and h200.memory_bytes == 141e9
    assert CATALOG.hardware("a100").fp8_tflops is None
    h100 = CATALOG.hardware("h100")
    assert h100.gemm_peak_flops_s(2) == 989e12
    assert h100.gemm_peak_flops_s(1) == 1979e12
    assert CATALOG.hardware("a100").gemm_peak_flops_s(1) == 312e12  # no FP8: runs at bf16
    assert h100.scaleup_bytes_s == 450e9
    assert CATALOG.hardware("l4").scaleup_bytes_s == 32e9  # no NVLink: PCIe
    for hw_id in HARDWARE_IDS:
        hw = CATALOG.hardware(hw_id)
        if hw.device == "gpu":
            assert hw.gpus_per_node == 8 and "../shared/catalog" in hw.source
    cpu = CATALOG.hardware("cpu-core")  # one core of vLLM's CPU backend (docs/live.md)
    assert (cpu.device, cpu.gpus_per_node, cpu.bf16_flops_s, cpu.link_per_dir_gbs) == ("cpu", 1, 2.0e12, 0)


def test_unknown_ids_name_the_known_ones_in_one_line():
    with pytest.raises(CatalogError) as err:
        CATALOG.model("llama-9b")
    assert str(err.value) == "unknown model 'llama-9b'; known: " + ", ".join(MODEL_IDS)
    with pytest.raises(CatalogError, match=r"^unknown hardware 'h1000'; known: a100, h100, "):
        CATALOG.hardware("h1000")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"llama-3-8b": {"num_layers": -1}}, "model 'llama-3-8b': field 'num_layers': Input should be greater than 0 (got -1)"),
        ({"llama-3-8b": {"num_layerz": 3}}, "model 'llama-3-8b': field 'num_layerz': not a known field"),
        ({"new-model": {"name": "x"}}, "model 'new-model': field 'hf_repo': required field missing"),
        ({"llama-3-8b": {"attention": "mla"}}, "model 'llama-3-8b': field 'kv_lora_rank': required when attention is 'mla'"),
        ({"llama-3-8b": {"num_kv_heads": 5}}, "model 'llama-3-8b': field 'num_kv_heads': must divide num_heads (32), got 5"),
        ({"llama-3-8b": {"attention": "sparse"}}, "model 'llama-3-8b': field 'attention'"),
        ({"llama-3-8b": "nope"}, "model 'llama-3-8b': entry must be a mapping"),
        ({"llama-3-8b": {"id": "other"}}, "model 'llama-3-8b': field 'id' is 'other'"),
    ],
)
def test_malformed_model_entries_name_entry_and_field(entry, message):
    with pytest.raises(CatalogError) as err:
        CATALOG.with_entries(models=entry)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_malformed_hardware_entry_names_field():
    with pytest.raises(CatalogError, match=r"^hardware 'h100': field 'price_usd_per_gpu_hr': must lie within"):
        CATALOG.with_entries(hardware={"h100": {"price_usd_per_gpu_hr": 100}})
    with pytest.raises(CatalogError, match=r"^hardware 'h100': field 'mem_bw_gbs': Input should be greater than 0"):
        CATALOG.with_entries(hardware={"h100": {"mem_bw_gbs": 0}})


def test_with_entries_merges_onto_known_ids_and_adds_new_ones():
    tiny = {
        "name": "Tiny", "hf_repo": "example/tiny", "attention": "gqa", "num_layers": 2, "hidden_size": 64,
        "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 100,
        "max_context": 512,
    }
    cat = CATALOG.with_entries(models={"tiny": tiny}, hardware={"h100": {"price_usd_per_gpu_hr": 3.0}})
    assert cat.model_ids == MODEL_IDS + ("tiny",)
    assert isinstance(cat.model("tiny"), ModelSpec)
    assert cat.hardware("h100").price_usd_per_gpu_hr == 3.0
    assert cat.hardware("h100").mem_bw_gbs == 3350  # other fields kept
    assert CATALOG.hardware("h100").price_usd_per_gpu_hr == 2.49  # original untouched
    with pytest.raises(Exception):
        cat.hardware("h100").memory_gb = 1  # frozen


def test_from_files_applies_files_in_order(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("hardware:\n  h100:\n    price_usd_per_gpu_hr: 3.0\n")
    second = tmp_path / "b.yaml"
    second.write_text("hardware:\n  h100:\n    price_usd_per_gpu_hr: 4.0\nmodels:\n  llama-3-8b:\n    max_context: 4096\n")
    cat = Catalog.from_files([first, second])
    assert cat.hardware("h100").price_usd_per_gpu_hr == 4.0
    assert cat.model("llama-3-8b").max_context == 4096
    assert Catalog.default().with_files([first]).hardware("h100").price_usd_per_gpu_hr == 3.0
    assert isinstance(cat.hardware("a100"), HardwareSpec)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus:\n  x: {}\n", "unknown section 'gpus'; allowed: models, hardware"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("models: [1, 2]\n", "section 'models' must map ids to entries"),
        ("models: {a: [\n", "is not valid YAML"),
    ],
)
def test_bad_catalog_files_raise_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=message) as err:
        Catalog.from_files([path])
    assert "\n" not in str(err.value)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read catalog file"):
        Catalog.from_files([tmp_path / "absent.yaml"])


def test_empty_catalog_file_changes_nothing(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert Catalog.from_files([path]).model_ids == MODEL_IDS
