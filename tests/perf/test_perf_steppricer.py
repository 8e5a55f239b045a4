"""Pricing steps CSV rows: every catalog model on every catalog GPU, layer overrides, row errors."""

from __future__ import annotations

import math

import pytest

from servesim.errors import TraceError
from servesim.perf import Catalog, StepTimeModel, StepTimeParams
from servesim.perf.steppricer import StepPricer
from servesim.perf.steprows import StepRow

CATALOG = Catalog.default()


def prefill(model: str, tokens: int = 2048, layers: int | None = None) -> StepRow:
    return StepRow(1, model, "prefill", (tokens,), 0, 0, False, layers)


def decode(model: str, graphed: bool = True, layers: int | None = None) -> StepRow:
    return StepRow(2, model, "decode", (), 32, 4096, graphed, layers)


@pytest.mark.parametrize("gpu", CATALOG.hardware_ids)
def test_every_model_on_every_gpu_has_a_finite_positive_time(gpu):
    # TP = 1 even where the weights would not fit: prediction is about time, not memory.
    rows = [row for model in CATALOG.model_ids for row in (prefill(model), decode(model), decode(model, False))]
    times = StepPricer(rows, CATALOG.hardware(gpu), CATALOG).times_s()
    assert all(math.isfinite(t) and t > 0 for t in times)


def test_rows_match_the_step_model_of_their_mode():
    h100 = CATALOG.hardware("h100")
    llama = CATALOG.model("llama-3-8b")
    rows = [prefill("llama-3-8b"), decode("llama-3-8b"), decode("llama-3-8b", False)]
    times = StepPricer(rows, h100, CATALOG).times_s()
    assert times[0] == StepTimeModel(llama, h100, cuda_graphs=False).time_s(rows[0].shape())
    assert times[1] == StepTimeModel(llama, h100, cuda_graphs=True).time_s(rows[1].shape())
    assert times[2] == StepTimeModel(llama, h100, cuda_graphs=False).time_s(rows[2].shape())


def test_halving_layers_halves_the_layer_gemm_work():
    h100 = CATALOG.hardware("h100")
    params = StepTimeParams()
    full, half = StepPricer([prefill("llama-3-8b", 8192), prefill("llama-3-8b", 8192, 16)], h100).breakdowns(params)
    # The lm_head (one row, memory-bound) does not scale with layers.
    head = 2 * 128256 * 4096 / (3350e9 * params.mem_bw_efficiency)
    assert half.gemm_s - head == pytest.approx((full.gemm_s - head) / 2, rel=1e-12)
    assert half.attention_prefill_s == pytest.approx(full.attention_prefill_s / 2, rel=1e-12)


def test_unknown_model_and_bad_layer_override_name_the_row():
    h100 = CATALOG.hardware("h100")
    with pytest.raises(TraceError, match=r"row 1 \(line 2\): column 'model' = 'gpt-5': unknown model"):
        StepPricer([prefill("gpt-5")], h100)
    # DeepSeek-V3's first 3 layers are dense: it needs more than 3 layers.
    with pytest.raises(TraceError, match="row 1 .*column 'num_layers' = 3: not valid for deepseek-v3"):
        StepPricer([prefill("deepseek-v3", layers=3)], h100)
