"""The runner against a scripted backend: row selection, skip counts, repeats, errors; backend choice."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest

from servesim.errors import ConfigError
from servesim.perf import Catalog
from servesim.profile import RowSkipped, RowSpec, profile_steps, select_backend
from servesim.profile.backend import GRAPHS_NEED_CUDA, OUT_OF_MEMORY, TORCH_MISSING
from servesim.profile.footprint import row_bytes, weight_bytes
from servesim.profile.numpy_backend import NumpyBackend
from servesim.profile.runner import NEEDS_MORE_MEMORY

CATALOG = Catalog.default()
LLAMA_8B = CATALOG.model("llama-3-8b")


class ScriptedDecoder:
    """Returns ``ms`` per run (one per repeat); raises ``RowSkipped`` for rows in ``fail``."""

    def __init__(self, ms: float, fail: Sequence[RowSpec]) -> None:
        self.ms, self.fail = ms, set(fail)
        self.calls: list[tuple[RowSpec, int, int]] = []
        self.closed = False

    def time_row_ms(self, row: RowSpec, warmup: int, repeats: int) -> list[float]:
        self.calls.append((row, warmup, repeats))
        if row in self.fail:
            raise RowSkipped(OUT_OF_MEMORY)
        return [self.ms * (i + 1) for i in range(repeats)]

    def close(self) -> None:
        self.closed = True


class ScriptedBackend:
    """A backend with a set amount of free memory and optional graph support."""

    name = "scripted"
    device = "cuda"
    elem_bytes = 2

    def __init__(self, free_bytes: float, supports_graphs: bool = True, fail: Sequence[RowSpec] = ()) -> None:
        self.free_bytes = free_bytes
        self.supports_graphs = supports_graphs
        self.decoder = ScriptedDecoder(2.0, fail)
        self.built: list[tuple[str, int, int]] = []

    def device_name(self) -> str:
        return "Scripted GPU"

    def free_memory_bytes(self) -> float:
        return self.free_bytes

    def build(self, model, num_layers: int, seed: int) -> ScriptedDecoder:
        self.built.append((model.id, num_layers, seed))
        return self.decoder

    def device_facts(self) -> dict:
        return {"device": "Scripted GPU"}


SMALL = RowSpec("prefill", (128,))
BIG = RowSpec("decode", (), 256, 8192)
GRAPHED = RowSpec("decode", (), 1, 512, graphed=True)


def test_rows_are_timed_with_default_repeats_by_kind_and_written_with_stats():
    backend = ScriptedBackend(free_bytes=1e12)
    plan = [SMALL, GRAPHED, RowSpec("mixed", (64,), 2, 128)]
    result = profile_steps(LLAMA_8B, plan, backend, num_layers=4, warmup=2)
    assert backend.built == [("llama-3-8b", 4, 0)] and backend.decoder.closed
    assert [(row.kind, warmup, repeats) for row, warmup, repeats in backend.decoder.calls] == [
        ("prefill", 2, 5), ("decode", 2, 10), ("mixed", 2, 10),
    ]
    first = result.rows[0]
    assert first == {
        "model": "llama-3-8b", "kind": "prefill", "prefill_lens": "128", "decode_batch": 0, "decode_ctx": 0,
        "tokens": 128, "graphed": 0, "median_ms": 6.0, "min_ms": 2.0, "max_ms": 10.0,
        "num_layers": 4, "device": "Scripted GPU",
    }
    assert result.rows[1]["graphed"] == 1 and result.skipped == {}


def test_rows_that_do_not_fit_or_need_graphs_are_skipped_and_counted_without_running():
    # Room for 32 layers of weights and the small row, not for 256 x 8192 of KV cache (~34 GB).
    free = (weight_bytes(LLAMA_8B, 32, 2) + row_bytes(LLAMA_8B, SMALL, 32, 2)) / 0.85 * 1.01
    backend = ScriptedBackend(free_bytes=free, supports_graphs=False)
    result = profile_steps(LLAMA_8B, [SMALL, BIG, GRAPHED, BIG], backend, repeats=1)
    assert [row.prefill_lens for row, _, _ in backend.decoder.calls] == [(128,)]
    assert result.skipped == {NEEDS_MORE_MEMORY: 2, GRAPHS_NEED_CUDA: 1}
    assert [row["kind"] for row in result.rows] == ["prefill"]


def test_nothing_is_built_when_no_row_can_run():
    backend = ScriptedBackend(free_bytes=1e9)  # 1 GB: not even the weights of an 8B model
    result = profile_steps(LLAMA_8B, [SMALL, BIG], backend)
    assert backend.built == [] and result.rows == [] and result.skipped == {NEEDS_MORE_MEMORY: 2}


def test_a_row_the_decoder_gives_up_on_is_counted_and_reported_to_the_callback():
    backend = ScriptedBackend(free_bytes=1e12, fail=[BIG])
    seen = []
    result = profile_steps(
        LLAMA_8B, [SMALL, BIG], backend, repeats=1, on_row=lambda i, n, row, outcome: seen.append((i, n, outcome))
    )
    assert result.skipped == {OUT_OF_MEMORY: 1} and len(result.rows) == 1
    assert [(i, n) for i, n, _ in seen] == [(1, 2), (2, 2)]
    assert isinstance(seen[0][2], dict) and seen[1][2] == OUT_OF_MEMORY


def test_footprint_grows_with_layers_cache_and_tokens():
    assert weight_bytes(LLAMA_8B, 32, 2) == pytest.approx(2 * LLAMA_8B.num_params, rel=1e-9)
    assert weight_bytes(LLAMA_8B, 1, 4) < weight_bytes(LLAMA_8B, 2, 4)
    assert row_bytes(LLAMA_8B, BIG, 32, 2) > 32 * 256 * 8192 * 2 * 1024 * 2  # the KV cache alone
    assert row_bytes(LLAMA_8B, RowSpec("prefill", (16,)), 32, 2) < row_bytes(LLAMA_8B, SMALL, 32, 2)


@pytest.mark.parametrize(
    ("model_id", "message"),
    [("deepseek-v3", "not MLA"), ("mixtral-8x7b", "not mixtures of experts")],
)
def test_models_the_backends_cannot_build_are_rejected(model_id, message):
    with pytest.raises(ConfigError, match=message):
        profile_steps(CATALOG.model(model_id), [SMALL], ScriptedBackend(1e15))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": 0}, "option --num-layers: must be at least 1, got 0"),
        ({"warmup": -1}, "option --warmup: must be at least 0, got -1"),
        ({"repeats": 0}, "option --repeats: must be at least 1, got 0"),
    ],
)
def test_bad_counts_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        profile_steps(LLAMA_8B, [SMALL], ScriptedBackend(1e12), **kwargs)


def test_select_backend_numpy_and_its_errors():
    assert isinstance(select_backend("numpy", "auto"), NumpyBackend)
    assert isinstance(select_backend("numpy", "cpu"), NumpyBackend)
    with pytest.raises(ConfigError, match="numpy backend runs on the CPU"):
        select_backend("numpy", "cuda")
    with pytest.raises(ConfigError, match="unknown backend 'jax'"):
        select_backend("jax", "auto")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        select_backend("auto", "tpu")


def test_without_torch_auto_falls_back_to_numpy_and_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail, as when not installed
    assert isinstance(select_backend("auto", "auto"), NumpyBackend)
    with pytest.raises(ConfigError) as err:
        select_backend("torch", "auto")
    assert str(err.value) == TORCH_MISSING == "servesim profile needs PyTorch: pip install 'servesim[profile]'"
