"""The profiling iteration in numpy, float32 on the CPU: runs wherever servesim runs.

It is the same iteration as the torch backend and the reference rows
(``shared/calibration/README.md``): RMSNorm, fused QKV projection, rotary
embedding, attention per sequence (causal over its own prompt for a prefill,
one query over a contiguous cache of ``decode_ctx`` tokens plus its own for a
decode, grouped-query), fused gate/up SwiGLU MLP, and logits for each
sequence's last token only.  CPU times say little about a GPU; the backend
exists so the kit can be used and tested on machines without PyTorch.
CUDA graphs do not exist here, so the runner skips ``graphed`` rows.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.perf.model_spec import ModelSpec
from servesim.profile.backend import GRAPHS_NEED_CUDA, OUT_OF_MEMORY, RowSkipped
from servesim.profile.host import available_host_bytes, cpu_name, total_host_bytes
from servesim.profile.layout import TokenLayout, rotary_tables
from servesim.profile.rows import RowSpec

_DTYPE = np.float32
_INIT_STD = 0.02  # keeps activations finite through random layers
_RMS_EPS = 1e-5
# Attention score elements materialised at once for one prompt (32 MiB of
# float32): prompts are processed in query blocks, as a flash kernel would,
# so a 16k-token prompt never holds its full score matrix.
_PREFILL_SCORE_ELEMS = 2**23
_GEMM_N = 1024
_COPY_BYTES = 64 * 2**20


class NumpyBackend:
    """numpy on the CPU, float32 (see module docstring)."""

    name = "numpy"
    device = "cpu"
    elem_bytes = 4
    supports_graphs = False

    def device_name(self) -> str:
        """The processor, e.g. ``cpu: AMD EPYC 9654 (16 cores)``."""
        return cpu_name()

    def free_memory_bytes(self) -> float:
        """Host memory available now, bytes."""
        return available_host_bytes()

    def build(self, model: ModelSpec, num_layers: int, seed: int) -> NumpyDecoder:
        """A decoder of ``model``'s shape with ``num_layers`` random layers (seeded by ``seed``)."""
        return NumpyDecoder(_random_weights(model, num_layers, np.random.default_rng(seed)), model, seed)

    def device_facts(self) -> dict[str, Any]:
        """Processor, versions, memory, a 1024^3 float32 GEMM rate and a 64 MiB copy rate."""
        rng = np.random.default_rng(0)
        a = rng.standard_normal((_GEMM_N, _GEMM_N), dtype=_DTYPE)
        b = rng.standard_normal((_GEMM_N, _GEMM_N), dtype=_DTYPE)
        gemm_s = _best_of(lambda: a @ b, 5)
        src = np.ones(_COPY_BYTES // 4, dtype=_DTYPE)
        dst = np.empty_like(src)
        copy_s = _best_of(lambda: np.copyto(dst, src), 5)
        return {
            "device": self.device_name(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "mem_gib": round(total_host_bytes() / 2**30, 1),
            f"gemm_{_GEMM_N}_tflops": round(2 * _GEMM_N**3 / gemm_s / 1e12, 4),
            "copy_tbps_rw": round(2 * _COPY_BYTES / copy_s / 1e12, 4),
        }


@dataclass(slots=True)
class _Layer:
    norm1: np.ndarray  # [hidden]
    wqkv: np.ndarray  # [hidden, (heads + 2 * kv_heads) * head_dim]
    bqkv: np.ndarray | None  # [(heads + 2 * kv_heads) * head_dim] or None
    wo: np.ndarray  # [heads * head_dim, hidden]
    norm2: np.ndarray  # [hidden]
    wgu: np.ndarray  # [hidden, 2 * intermediate]: gate then up
    wdown: np.ndarray  # [intermediate, hidden]


@dataclass(slots=True)
class _Weights:
    embed: np.ndarray  # [vocab, hidden]
    layers: list[_Layer]
    final_norm: np.ndarray  # [hidden]
    lm_head: np.ndarray  # [hidden, vocab] (a view of embed when tied)


class NumpyDecoder:
    """Random-weight decoder that times rows with ``time.perf_counter``."""

    def __init__(self, weights: _Weights, model: ModelSpec, seed: int) -> None:
        self._w = weights
        self._heads = model.num_heads
        self._kv_heads: int = model.num_kv_heads  # type: ignore[assignment]
        self._head_dim: int = model.head_dim  # type: ignore[assignment]
        self._vocab = model.vocab_size
        self._seed = seed

    def time_row_ms(self, row: RowSpec, warmup: int, repeats: int) -> list[float]:
        """Wall milliseconds of ``repeats`` timed iterations of ``row`` after ``warmup`` untimed ones."""
        if row.graphed:
            raise RowSkipped(GRAPHS_NEED_CUDA)
        try:
            step = self._prepare(row)
            for _ in range(warmup):
                step()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times.append((time.perf_counter() - start) * 1e3)
            return times
        except MemoryError:
            raise RowSkipped(OUT_OF_MEMORY) from None

    def close(self) -> None:
        """Drop the weights."""
        self._w.layers.clear()

    # -------------------------------------------------------------- iteration
    def _prepare(self, row: RowSpec):
        """The row's inputs (token ids, rotary angles, KV caches) and a closure running one iteration."""
        rng = np.random.default_rng(self._seed + 1)
        layout = TokenLayout.of(row)
        tokens = rng.integers(0, self._vocab, layout.num_tokens)
        cos, sin = rotary_tables(layout.positions, self._head_dim)
        caches = [self._random_cache(row, rng) for _ in self._w.layers] if row.decode_batch else []
        return lambda: self._forward(layout, tokens, cos, sin, caches)

    def _random_cache(self, row: RowSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # Filled, not zeroed: untouched zero pages would make cache reads artificially cheap.
        shape = (row.decode_batch, self._kv_heads, row.decode_ctx + 1, self._head_dim)
        return rng.random(shape, dtype=_DTYPE), rng.random(shape, dtype=_DTYPE)

    def _forward(self, layout: TokenLayout, tokens, cos, sin, caches) -> np.ndarray:
        """One iteration over all tokens; returns the logits ``[num_sequences, vocab]``."""
        x = self._w.embed[tokens]
        for i, layer in enumerate(self._w.layers):
            x = x + self._attention_block(layer, x, layout, cos, sin, caches[i] if caches else None)
            x = x + self._mlp_block(layer, x)
        last = _rms_norm(x[layout.last_token], self._w.final_norm)
        return last @ self._w.lm_head

    def _attention_block(self, layer: _Layer, x, layout: TokenLayout, cos, sin, cache) -> np.ndarray:
        num_tokens, hd = x.shape[0], self._head_dim
        q_dim, kv_dim = self._heads * hd, self._kv_heads * hd
        qkv = _rms_norm(x, layer.norm1) @ layer.wqkv
        if layer.bqkv is not None:
            qkv += layer.bqkv
        q = _rotate(qkv[:, :q_dim].reshape(num_tokens, self._heads, hd), cos, sin)
        k = _rotate(qkv[:, q_dim : q_dim + kv_dim].reshape(num_tokens, self._kv_heads, hd), cos, sin)
        v = qkv[:, q_dim + kv_dim :].reshape(num_tokens, self._kv_heads, hd)
        out = np.empty((num_tokens, q_dim), dtype=_DTYPE)
        for start, end in layout.prefill_spans:
            out[start:end] = prefill_attention(q[start:end], k[start:end], v[start:end])
        if cache is not None:
            ds, k_cache, v_cache = layout.decode_start, cache[0], cache[1]
            # The new token's key and value go into the cache slot after the context.
            k_cache[:, :, layout.decode_ctx] = k[ds:]
            v_cache[:, :, layout.decode_ctx] = v[ds:]
            out[ds:] = decode_attention(q[ds:], k_cache, v_cache)
        return out @ layer.wo

    def _mlp_block(self, layer: _Layer, x) -> np.ndarray:
        gate_up = _rms_norm(x, layer.norm2) @ layer.wgu
        width = gate_up.shape[1] // 2
        gate = gate_up[:, :width]
        return (gate / (1.0 + np.exp(-gate)) * gate_up[:, width:]) @ layer.wdown


# ---------------------------------------------------------------- attention
def prefill_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, block_elems: int = _PREFILL_SCORE_ELEMS
) -> np.ndarray:
    """Causal grouped-query attention of one prompt over itself.

    ``q`` is ``[len, heads, head_dim]``, ``k`` and ``v`` ``[len, kv_heads,
    head_dim]``; returns ``[len, heads * head_dim]``.  Queries go in blocks of
    at most ``block_elems`` score elements, as a flash kernel tiles them.
    """
    length, heads, hd = q.shape
    kvh = k.shape[1]
    qs = q.transpose(1, 0, 2).reshape(kvh, heads // kvh, length, hd)
    ks = k.transpose(1, 2, 0)[:, None]  # [kv_heads, 1, hd, len]
    vs = v.transpose(1, 0, 2)[:, None]  # [kv_heads, 1, len, hd]
    out = np.empty_like(qs)
    block = max(1, min(length, block_elems // (heads * length)))
    for lo in range(0, length, block):
        hi = min(length, lo + block)
        # Keys past the block's last query are all masked: skip them, as flash attention does.
        scores = (qs[:, :, lo:hi] @ ks[..., :hi]) * _DTYPE(hd**-0.5)
        scores += np.triu(np.full((hi - lo, hi), -np.inf, dtype=_DTYPE), k=lo + 1)
        out[:, :, lo:hi] = _softmax(scores) @ vs[:, :, :hi]
    return out.reshape(heads, length, hd).transpose(1, 0, 2).reshape(length, heads * hd)


def decode_attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray) -> np.ndarray:
    """One query per sequence over its whole cache, grouped-query.

    ``q`` is ``[batch, heads, head_dim]``, the caches ``[batch, kv_heads,
    cached, head_dim]``; returns ``[batch, heads * head_dim]``.  Each KV
    head's query heads are stacked as a query block, so no cache is copied.
    """
    batch, heads, hd = q.shape
    kvh = k_cache.shape[1]
    qs = q.reshape(batch, kvh, heads // kvh, hd)
    scores = (qs @ k_cache.transpose(0, 1, 3, 2)) * _DTYPE(hd**-0.5)
    return (_softmax(scores) @ v_cache).reshape(batch, heads * hd)


# ------------------------------------------------------------------ helpers
def _rms_norm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + _RMS_EPS)) * weight


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotary embedding, rotate-half form; ``x`` is ``[tokens, heads, head_dim]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _random_weights(model: ModelSpec, num_layers: int, rng: np.random.Generator) -> _Weights:
    h, inter = model.hidden_size, model.intermediate_size
    q_dim = model.num_heads * model.head_dim  # type: ignore[operator]
    qkv_dim = q_dim + 2 * model.num_kv_heads * model.head_dim  # type: ignore[operator]

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=_DTYPE) * _DTYPE(_INIT_STD)

    layers = [
        _Layer(
            norm1=np.ones(h, dtype=_DTYPE),
            wqkv=normal(h, qkv_dim),
            bqkv=normal(qkv_dim) if model.attention_bias else None,
            wo=normal(q_dim, h),
            norm2=np.ones(h, dtype=_DTYPE),
            wgu=normal(h, 2 * inter),
            wdown=normal(inter, h),
        )
        for _ in range(num_layers)
    ]
    embed = normal(model.vocab_size, h)
    lm_head = embed.T if model.tie_embeddings else normal(h, model.vocab_size)
    return _Weights(embed=embed, layers=layers, final_norm=np.ones(h, dtype=_DTYPE), lm_head=lm_head)


def _best_of(fn, runs: int) -> float:
    """Fastest of ``runs`` calls of ``fn``, seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
