"""The numpy backend: attention against a naive reference, and a tiny model's quick plan end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from servesim.perf import Catalog
from servesim.profile import COLUMNS, profile_steps, quick_plan, write_rows
from servesim.profile.backend import GRAPHS_NEED_CUDA, RowSkipped
from servesim.profile.numpy_backend import NumpyBackend, decode_attention, prefill_attention
from servesim.profile.rows import RowSpec
from tiny_models import TINY

REFERENCE_COLUMNS = [
    "model", "kind", "prefill_lens", "decode_batch", "decode_ctx", "tokens", "graphed", "median_ms", "min_ms", "max_ms",
]
TINY_MODEL = Catalog.default().with_entries(models={"tiny": TINY}).model("tiny")


def naive_causal_attention(q, k, v):
    """Per-head causal attention with a full score matrix, float64: ``[len, heads * head_dim]``."""
    length, heads, hd = q.shape
    group = heads // k.shape[1]
    out = np.zeros((length, heads, hd))
    for h in range(heads):
        scores = q[:, h].astype(np.float64) @ k[:, h // group].T / np.sqrt(hd)
        scores[np.triu_indices(length, 1)] = -np.inf
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, h] = (weights / weights.sum(axis=1, keepdims=True)) @ v[:, h // group]
    return out.reshape(length, heads * hd)


@pytest.mark.parametrize("block_elems", [1, 4 * 37 * 5, 2**23])
def test_prefill_attention_matches_naive_for_any_query_block(block_elems):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((37, 4, 8), dtype=np.float32)
    k, v = (rng.standard_normal((37, 2, 8), dtype=np.float32) for _ in range(2))
    assert np.allclose(prefill_attention(q, k, v, block_elems), naive_causal_attention(q, k, v), atol=1e-5)


def test_decode_attention_equals_the_last_prompt_position():
    # One query over a cache of the whole prompt sees what the prompt's last token sees.
    rng = np.random.default_rng(1)
    q = rng.standard_normal((9, 4, 8), dtype=np.float32)
    k, v = (rng.standard_normal((9, 2, 8), dtype=np.float32) for _ in range(2))
    cache_k, cache_v = k.transpose(1, 0, 2)[None], v.transpose(1, 0, 2)[None]
    out = decode_attention(q[-1:], cache_k, cache_v)
    assert np.allclose(out[0], naive_causal_attention(q, k, v)[-1], atol=1e-5)


def test_decoder_skips_graphed_rows_and_returns_one_time_per_repeat():
    decoder = NumpyBackend().build(TINY_MODEL, num_layers=1, seed=0)
    try:
        with pytest.raises(RowSkipped, match="need CUDA graphs"):
            decoder.time_row_ms(RowSpec("decode", (), 2, 16, graphed=True), 0, 1)
        times = decoder.time_row_ms(RowSpec("mixed", (8,), 2, 16), warmup=1, repeats=3)
    finally:
        decoder.close()
    assert len(times) == 3 and all(t > 0 for t in times)


@pytest.fixture(scope="module")
def quick_result():
    return profile_steps(TINY_MODEL, quick_plan(), NumpyBackend(), warmup=1, repeats=2)


def test_quick_plan_measures_every_eager_row_and_counts_graphed_skips(quick_result):
    assert len(quick_result.rows) == 7
    assert quick_result.skipped == {GRAPHS_NEED_CUDA: 2}
    assert quick_result.num_layers == 2
    assert all(row["graphed"] == 0 and row["num_layers"] == 2 for row in quick_result.rows)


def test_quick_plan_times_are_positive_and_ordered(quick_result):
    for row in quick_result.rows:
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]
    prefill = {row["prefill_lens"]: row["median_ms"] for row in quick_result.rows if row["kind"] == "prefill"}
    # 64x the tokens and quadratic attention: a wide margin over CPU timing noise.
    assert prefill["1024"] > prefill["16"]


def test_written_csv_has_the_shared_columns_then_num_layers_and_device(quick_result, tmp_path):
    path = tmp_path / "tiny_steps.csv"
    write_rows(path, quick_result.rows)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == REFERENCE_COLUMNS + ["num_layers", "device"] == list(COLUMNS)
    assert [r["kind"] for r in rows] == ["prefill"] * 4 + ["decode"] * 2 + ["mixed"]
    mixed = rows[-1]
    assert (mixed["prefill_lens"], mixed["decode_batch"], mixed["decode_ctx"], mixed["tokens"]) == (
        "256+256", "4", "512", "516",
    )
    assert rows[0]["device"].startswith("cpu: ")


def test_device_facts_measure_a_gemm_and_a_copy():
    facts = NumpyBackend().device_facts()
    assert facts["device"].startswith("cpu: ")
    assert facts["gemm_1024_tflops"] > 0 and facts["copy_tbps_rw"] > 0
    assert {"numpy", "python", "mem_gib"} <= set(facts)
