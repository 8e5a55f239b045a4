"""Row plans and the token layout: exact counts, the reference grid, exact indices."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from servesim.errors import ConfigError
from servesim.profile.layout import TokenLayout, rotary_tables
from servesim.profile.rows import PLANS, RowSpec, default_plan, plan_rows, quick_plan

STEPS_CSV = Path(__file__).resolve().parents[2].parent / "shared" / "calibration" / "h100" / "llama-3-8b_steps.csv"


def key(row: RowSpec) -> tuple:
    return (row.kind, row.prefill_lens_text, row.decode_batch, row.decode_ctx, int(row.graphed))


def test_default_plan_counts_by_kind_and_graph_mode():
    counts = Counter((row.kind, row.graphed) for row in default_plan())
    assert counts == {("prefill", False): 13, ("decode", False): 23, ("decode", True): 23, ("mixed", False): 5}


def test_default_plan_has_no_duplicate_rows():
    plan = default_plan()
    assert len({key(row) for row in plan}) == len(plan) == 64


def test_default_plan_decode_grid_stops_at_two_to_the_18_cached_tokens():
    decodes = [row for row in default_plan() if row.kind == "decode"]
    largest = {ctx: max(r.decode_batch for r in decodes if r.decode_ctx == ctx) for ctx in (512, 2048, 8192)}
    assert largest == {512: 256, 2048: 128, 8192: 32}


@pytest.mark.skipif(not STEPS_CSV.exists(), reason="../shared calibration data not present")
def test_default_plan_is_exactly_the_shared_csv_grid():
    with STEPS_CSV.open(newline="", encoding="utf-8") as handle:
        reference = [
            (r["kind"], r["prefill_lens"], int(r["decode_batch"]), int(r["decode_ctx"]), int(r["graphed"]))
            for r in csv.DictReader(handle)
        ]
    assert [key(row) for row in default_plan()] == reference


def test_quick_plan_has_every_kind_and_both_graph_modes():
    plan = quick_plan()
    assert len(plan) == 9
    assert {row.kind for row in plan} == {"prefill", "decode", "mixed"}
    assert sum(row.graphed for row in plan) == 2
    assert max(row.num_tokens for row in plan) == 1024


def test_plan_rows_by_name_and_unknown_name():
    assert set(PLANS) == {"default", "quick"}
    assert plan_rows("quick") == quick_plan()
    with pytest.raises(ConfigError, match="option --plan: unknown plan 'huge'; known: default, quick"):
        plan_rows("huge")


def test_row_counts_and_labels():
    mixed = RowSpec("mixed", (256, 256), 16, 4096)
    assert (mixed.num_prefill_tokens, mixed.num_tokens, mixed.num_sequences) == (512, 528, 18)
    assert mixed.prefill_lens_text == "256+256"
    assert mixed.label() == "prefill 2x256 + decode 16x4096 eager"
    assert RowSpec("decode", (), 32, 2048, graphed=True).label() == "decode 32x2048 graphed"
    assert RowSpec("prefill", (1024, 8)).label() == "prefill 1024+8 eager"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kind="prefill", prefill_lens=(), decode_batch=0, decode_ctx=0),
        dict(kind="decode", prefill_lens=(8,), decode_batch=1, decode_ctx=8),
        dict(kind="decode", prefill_lens=(), decode_batch=2, decode_ctx=0),
        dict(kind="prefill", prefill_lens=(0,)),
    ],
)
def test_malformed_rows_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RowSpec(**kwargs)


def test_layout_puts_prompts_first_then_one_token_per_decode():
    layout = TokenLayout.of(RowSpec("mixed", (3, 2), 2, 5))
    assert layout.prefill_spans == ((0, 3), (3, 5))
    assert (layout.decode_start, layout.num_decodes, layout.num_tokens) == (5, 2, 7)
    assert layout.positions.tolist() == [0, 1, 2, 0, 1, 5, 5]
    assert layout.last_token.tolist() == [2, 4, 5, 6]
    assert layout.max_position == 5


def test_rotary_tables_are_identity_at_position_zero():
    cos, sin = rotary_tables(np.array([0, 3]), head_dim=8)
    assert cos.shape == sin.shape == (2, 4) and cos.dtype == np.float32
    assert cos[0].tolist() == [1.0] * 4 and sin[0].tolist() == [0.0] * 4
    assert sin[1, 0] == pytest.approx(np.sin(3.0))
