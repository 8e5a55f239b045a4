"""The torch backend (skipped without PyTorch): CPU always, CUDA and graphs where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from servesim.perf import Catalog  # noqa: E402
from servesim.profile import profile_steps, quick_plan, select_backend  # noqa: E402
from servesim.profile.backend import GRAPHS_NEED_CUDA, RowSkipped  # noqa: E402
from servesim.profile.layout import TokenLayout  # noqa: E402
from servesim.profile.numpy_backend import decode_attention, prefill_attention  # noqa: E402
from servesim.profile.rows import RowSpec  # noqa: E402
from tiny_models import TINY  # noqa: E402

TINY_MODEL = Catalog.default().with_entries(models={"tiny": TINY}).model("tiny")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_cpu_quick_plan_measures_eager_rows_and_skips_graphed_ones():
    backend = select_backend("torch", "cpu")
    assert (backend.name, backend.device, backend.elem_bytes, backend.supports_graphs) == ("torch", "cpu", 4, False)
    result = profile_steps(TINY_MODEL, quick_plan(), backend, warmup=1, repeats=2)
    assert len(result.rows) == 7 and result.skipped == {GRAPHS_NEED_CUDA: 2}
    assert all(row["median_ms"] > 0 for row in result.rows)


def test_cpu_decoder_refuses_graphed_rows():
    decoder = select_backend("torch", "cpu").build(TINY_MODEL, 1, seed=0)
    with pytest.raises(RowSkipped, match="need CUDA graphs"):
        decoder.time_row_ms(RowSpec("decode", (), 1, 16, graphed=True), 0, 1)
    decoder.close()


def test_torch_attention_matches_the_numpy_backend():
    # Same inputs through both backends' attention: they compute one iteration.
    decoder = select_backend("torch", "cpu").build(TINY_MODEL, 1, seed=0)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((12, 4, 16), dtype=np.float32)
    k, v = (rng.standard_normal((12, 2, 16), dtype=np.float32) for _ in range(2))
    expected = prefill_attention(q, k, v)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    assert np.allclose(decoder._prefill_attention(tq, tk, tv).numpy(), expected, atol=1e-5)
    # A decode of token 12 over a cache of the first 11 (its own slot written by the decoder).
    cache = tuple(torch.from_numpy(np.ascontiguousarray(a.transpose(1, 0, 2)[None])).clone() for a in (k, v))
    cache[0][:, :, 11] = 0
    cache[1][:, :, 11] = 0
    layout = TokenLayout.of(RowSpec("decode", (), 1, 11))
    got = decoder._decode_attention(tq[11:], tk[11:], tv[11:], cache, layout).numpy()
    assert np.allclose(got[0], expected[11], atol=1e-5)
    assert np.allclose(got, decode_attention(q[11:], *(c.numpy() for c in cache)), atol=1e-5)
    decoder.close()


@needs_cuda
def test_cuda_quick_plan_measures_every_row_including_graphed():
    backend = select_backend("torch", "cuda")
    result = profile_steps(TINY_MODEL, quick_plan(), backend, warmup=2, repeats=3)
    assert len(result.rows) == 9 and result.skipped == {}
    graphed = [row for row in result.rows if row["graphed"]]
    assert len(graphed) == 2 and all(row["median_ms"] > 0 for row in graphed)
    facts = backend.device_facts()
    assert facts["gemm_8192_tflops"] > 0 and facts["d2d_copy_tbps_rw"] > 0 and facts["sm_count"] > 0
