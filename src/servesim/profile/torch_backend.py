"""The profiling iteration in PyTorch: bf16 on CUDA (float32 on CPU), the way the reference rows were made.

The decoder follows ``shared/calibration/README.md``: RMSNorm, fused QKV
projection, rotary embedding, fused gate/up SwiGLU MLP, one GEMM per
projection over all the iteration's tokens, attention per prompt (causal
``scaled_dot_product_attention`` over the prompt alone) and for all decodes
at once (one query each over a contiguous cache of ``decode_ctx`` tokens plus
its own), logits for each sequence's last token only.  On CUDA, iterations
are timed with CUDA events, and ``graphed`` rows are captured once as a CUDA
graph and replayed; on the CPU, with ``time.perf_counter`` (CPU ops finish
before they return) and without graphs.

PyTorch is imported by ``TorchBackend.open`` only; everything else receives
the module, so importing this file never needs torch.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

from servesim.errors import ConfigError
from servesim.perf.model_spec import ModelSpec
from servesim.profile.backend import GRAPHS_NEED_CUDA, OUT_OF_MEMORY, TORCH_MISSING, RowSkipped
from servesim.profile.host import available_host_bytes, cpu_name, total_host_bytes
from servesim.profile.layout import TokenLayout, rotary_tables
from servesim.profile.rows import RowSpec

_INIT_STD = 0.02  # keeps activations finite through random layers
_RMS_EPS = 1e-5
# GEMM and copy sizes for device_facts: the shared device.json's on a GPU
# (8192^3 bf16, 1 GiB copied), smaller on a CPU so the check takes a second.
_GEMM_N = {"cuda": 8192, "cpu": 1024}
_COPY_BYTES = {"cuda": 2**30, "cpu": 64 * 2**20}


class TorchBackend:
    """PyTorch on one device (``cuda`` or ``cpu``); see the module docstring."""

    name = "torch"

    def __init__(self, torch: Any, device: str) -> None:
        self._torch = torch
        self.device = device
        self.elem_bytes = 2 if device == "cuda" else 4
        self.supports_graphs = device == "cuda"
        self._dtype = torch.bfloat16 if device == "cuda" else torch.float32

    @classmethod
    def open(cls, device: str) -> TorchBackend:
        """Import torch and resolve ``device`` (``auto``: CUDA when available, else CPU).

        Raises ``ConfigError`` when torch is missing or CUDA is asked for but absent.
        """
        try:
            import torch
        except ImportError:
            raise ConfigError(TORCH_MISSING) from None
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise ConfigError("option --device cuda: PyTorch sees no CUDA device; use --device cpu")
        if device == "auto":
            device = "cuda" if cuda else "cpu"
        return cls(torch, device)

    def device_name(self) -> str:
        """The GPU's name (``NVIDIA H100 80GB HBM3``) or the processor's."""
        return self._torch.cuda.get_device_name() if self.device == "cuda" else cpu_name()

    def free_memory_bytes(self) -> float:
        """Free device memory now (GPU: as the driver reports it; CPU: host memory available), bytes."""
        if self.device == "cuda":
            return float(self._torch.cuda.mem_get_info()[0])
        return available_host_bytes()

    def build(self, model: ModelSpec, num_layers: int, seed: int) -> TorchDecoder:
        """A decoder of ``model``'s shape with ``num_layers`` random layers (seeded by ``seed``)."""
        torch = self._torch
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with torch.no_grad():
            weights = _random_weights(torch, model, num_layers, self.device, self._dtype, generator)
        native_gqa = self.device == "cuda" and _flash_takes_gqa(torch, self._dtype)
        return TorchDecoder(torch, weights, model, self.device, self._dtype, seed, native_gqa)

    def device_facts(self) -> dict[str, Any]:
        """Device, versions, memory, a square GEMM rate and a device copy rate (read + written bytes/s)."""
        torch, dev = self._torch, self.device
        n, copy_bytes = _GEMM_N[dev], _COPY_BYTES[dev]
        with torch.no_grad():
            a = torch.randn(n, n, dtype=self._dtype, device=dev)
            b = torch.randn(n, n, dtype=self._dtype, device=dev)
            gemm_ms = min(_timed_runs(torch, dev, lambda: a @ b, warmup=3, repeats=10))
            src = torch.empty(copy_bytes // self.elem_bytes, dtype=self._dtype, device=dev).fill_(1)
            dst = torch.empty_like(src)
            copy_ms = min(_timed_runs(torch, dev, lambda: dst.copy_(src), warmup=3, repeats=10))
        facts: dict[str, Any] = {"device": self.device_name(), "torch": torch.__version__}
        if dev == "cuda":
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            facts["cuda"] = torch.version.cuda
            facts["sm_count"] = props.multi_processor_count
            facts["mem_gib"] = round(props.total_memory / 2**30, 1)
            copy_key = "d2d_copy_tbps_rw"
        else:
            facts["mem_gib"] = round(total_host_bytes() / 2**30, 1)
            copy_key = "copy_tbps_rw"
        facts["python"] = platform.python_version()
        facts[f"gemm_{n}_tflops"] = round(2 * n**3 / (gemm_ms / 1e3) / 1e12, 4)
        facts[copy_key] = round(2 * copy_bytes / (copy_ms / 1e3) / 1e12, 4)
        return facts


# ------------------------------------------------------------------ weights
@dataclass(slots=True)
class _Layer:
    norm1: Any  # [hidden]
    wqkv: Any  # [(heads + 2 * kv_heads) * head_dim, hidden] (F.linear layout: out, in)
    bqkv: Any  # [(heads + 2 * kv_heads) * head_dim] or None
    wo: Any  # [hidden, heads * head_dim]
    norm2: Any  # [hidden]
    wgu: Any  # [2 * intermediate, hidden]: gate then up
    wdown: Any  # [hidden, intermediate]


@dataclass(slots=True)
class _Weights:
    embed: Any  # [vocab, hidden]
    layers: list[_Layer]
    final_norm: Any  # [hidden]
    lm_head: Any  # [vocab, hidden] (embed itself when tied)


def _random_weights(
    torch: Any, model: ModelSpec, num_layers: int, device: str, dtype: Any, generator: Any
) -> _Weights:
    h, inter = model.hidden_size, model.intermediate_size
    q_dim = model.num_heads * model.head_dim  # type: ignore[operator]
    qkv_dim = q_dim + 2 * model.num_kv_heads * model.head_dim  # type: ignore[operator]

    def normal(*shape: int) -> Any:
        return torch.randn(shape, dtype=dtype, device=device, generator=generator).mul_(_INIT_STD)

    def ones(size: int) -> Any:
        return torch.ones(size, dtype=dtype, device=device)

    layers = [
        _Layer(
            norm1=ones(h),
            wqkv=normal(qkv_dim, h),
            bqkv=normal(qkv_dim) if model.attention_bias else None,
            wo=normal(h, q_dim),
            norm2=ones(h),
            wgu=normal(2 * inter, h),
            wdown=normal(h, inter),
        )
        for _ in range(num_layers)
    ]
    embed = normal(model.vocab_size, h)
    lm_head = embed if model.tie_embeddings else normal(model.vocab_size, h)
    return _Weights(embed=embed, layers=layers, final_norm=ones(h), lm_head=lm_head)


def _flash_takes_gqa(torch: Any, dtype: Any) -> bool:
    """True when the flash SDPA kernel accepts fewer KV heads than query heads (``enable_gqa``).

    Where it does not (torch < 2.5, GPUs without flash attention), prompts'
    keys and values are widened to every head instead, so a flash or
    memory-efficient kernel still runs rather than the O(len^2) math path.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q = torch.zeros(1, 4, 16, 64, dtype=dtype, device="cuda")
        kv = torch.zeros(1, 2, 16, 64, dtype=dtype, device="cuda")
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
        return True
    except (ImportError, TypeError, RuntimeError):
        return False


# ------------------------------------------------------------------ decoder
@dataclass(slots=True)
class _RowInputs:
    """Everything one iteration reads besides the weights (static, so a CUDA graph can replay it)."""

    layout: TokenLayout
    tokens: Any  # int64 [num_tokens]
    cos: Any  # [num_tokens, head_dim // 2]
    sin: Any
    last_token: Any  # int64 [num_sequences]
    caches: list[tuple[Any, Any]]  # per layer: K and V [decode_batch, kv_heads, decode_ctx + 1, head_dim]


class TorchDecoder:
    """Random-weight decoder that times rows (see the module docstring)."""

    def __init__(
        self, torch: Any, weights: _Weights, model: ModelSpec, device: str, dtype: Any, seed: int, native_gqa: bool
    ) -> None:
        self._torch = torch
        self._w = weights
        self._heads = model.num_heads
        self._kv_heads: int = model.num_kv_heads  # type: ignore[assignment]
        self._head_dim: int = model.head_dim  # type: ignore[assignment]
        self._vocab = model.vocab_size
        self._device = device
        self._dtype = dtype
        self._seed = seed
        self._native_gqa = native_gqa

    def time_row_ms(self, row: RowSpec, warmup: int, repeats: int) -> list[float]:
        """Milliseconds of ``repeats`` timed iterations of ``row`` after ``warmup`` untimed ones."""
        torch = self._torch
        if row.graphed and self._device != "cuda":
            raise RowSkipped(GRAPHS_NEED_CUDA)
        try:
            with torch.no_grad():
                inputs = self._prepare(row)
                step = lambda: self._forward(inputs)  # noqa: E731
                if row.graphed:
                    return self._time_graphed(step, warmup, repeats)
                return _timed_runs(torch, self._device, step, warmup, repeats)
        except (MemoryError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and not _is_out_of_memory(err):
                raise
            raise RowSkipped(OUT_OF_MEMORY) from None
        finally:
            inputs = step = None  # drop the row's caches before the next row allocates its own
            if self._device == "cuda":
                torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the weights and return their memory to the device."""
        self._w.layers.clear()
        self._w.embed = self._w.lm_head = None
        if self._device == "cuda":
            self._torch.cuda.empty_cache()

    # ----------------------------------------------------------- iteration
    def _prepare(self, row: RowSpec) -> _RowInputs:
        torch, dev = self._torch, self._device
        generator = torch.Generator(device=dev).manual_seed(self._seed + 1)
        layout = TokenLayout.of(row)
        cos, sin = rotary_tables(layout.positions, self._head_dim)
        shape = (row.decode_batch, self._kv_heads, row.decode_ctx + 1, self._head_dim)

        def cache() -> Any:
            return torch.randn(shape, dtype=self._dtype, device=dev, generator=generator)

        return _RowInputs(
            layout=layout,
            tokens=torch.randint(0, self._vocab, (layout.num_tokens,), device=dev, generator=generator),
            cos=torch.from_numpy(cos).to(device=dev, dtype=self._dtype),
            sin=torch.from_numpy(sin).to(device=dev, dtype=self._dtype),
            last_token=torch.from_numpy(layout.last_token).to(dev),
            caches=[(cache(), cache()) for _ in self._w.layers] if row.decode_batch else [],
        )

    def _forward(self, inputs: _RowInputs) -> Any:
        """One iteration over all tokens; returns the logits ``[num_sequences, vocab]``."""
        F = self._torch.nn.functional
        x = F.embedding(inputs.tokens, self._w.embed)
        for i, layer in enumerate(self._w.layers):
            x = x + self._attention_block(layer, x, inputs, inputs.caches[i] if inputs.caches else None)
            x = x + self._mlp_block(layer, x)
        return F.linear(self._rms_norm(x[inputs.last_token], self._w.final_norm), self._w.lm_head)

    def _attention_block(self, layer: _Layer, x: Any, inputs: _RowInputs, cache: Any) -> Any:
        torch, F = self._torch, self._torch.nn.functional
        num_tokens, hd, layout = x.shape[0], self._head_dim, inputs.layout
        q_dim, kv_dim = self._heads * hd, self._kv_heads * hd
        qkv = F.linear(self._rms_norm(x, layer.norm1), layer.wqkv, layer.bqkv)
        q, k, v = qkv.split([q_dim, kv_dim, kv_dim], dim=-1)
        q = _rotate(torch, q.view(num_tokens, self._heads, hd), inputs.cos, inputs.sin)
        k = _rotate(torch, k.view(num_tokens, self._kv_heads, hd), inputs.cos, inputs.sin)
        v = v.view(num_tokens, self._kv_heads, hd)
        outs = [self._prefill_attention(q[a:b], k[a:b], v[a:b]) for a, b in layout.prefill_spans]
        if cache is not None:
            outs.append(self._decode_attention(q, k, v, cache, layout))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return F.linear(out, layer.wo)

    def _prefill_attention(self, q: Any, k: Any, v: Any) -> Any:
        """Causal attention of one prompt over itself; ``[len, heads * head_dim]``."""
        F = self._torch.nn.functional
        length = q.shape[0]
        qs, ks, vs = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # [1, heads, len, head_dim]
        if self._native_gqa:
            out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True)
        else:
            group = self._heads // self._kv_heads
            if group > 1:
                ks, vs = ks.repeat_interleave(group, dim=1), vs.repeat_interleave(group, dim=1)
            out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
        return out[0].transpose(0, 1).reshape(length, self._heads * self._head_dim)

    def _decode_attention(self, q: Any, k: Any, v: Any, cache: Any, layout: TokenLayout) -> Any:
        """All decodes at once, one query each over its cache plus its own token; ``[batch, heads * head_dim]``."""
        F = self._torch.nn.functional
        k_cache, v_cache = cache
        start, batch, ctx = layout.decode_start, layout.num_decodes, layout.decode_ctx
        # The new token's key and value go into the cache slot after the context.
        k_cache[:, :, ctx] = k[start:]
        v_cache[:, :, ctx] = v[start:]
        # Each KV head's query heads stacked as a query block: grouped-query
        # attention for a single query needs no mask and copies no cache.
        qs = q[start:].reshape(batch, self._kv_heads, self._heads // self._kv_heads, self._head_dim)
        out = F.scaled_dot_product_attention(qs, k_cache, v_cache)
        return out.reshape(batch, self._heads * self._head_dim)

    def _mlp_block(self, layer: _Layer, x: Any) -> Any:
        F = self._torch.nn.functional
        gate, up = F.linear(self._rms_norm(x, layer.norm2), layer.wgu).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, layer.wdown)

    def _rms_norm(self, x: Any, weight: Any) -> Any:
        # In float32, as Llama's reference code does, then back to the model dtype.
        xf = x.float()
        return (xf * self._torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + _RMS_EPS)).to(x.dtype) * weight

    def _time_graphed(self, step: Any, warmup: int, repeats: int) -> list[float]:
        """Capture ``step`` as one CUDA graph, then time its replays."""
        torch = self._torch
        # Warm up on a side stream before capture, as torch.cuda.graph requires
        # (lazy cuBLAS and attention initialisation must not be captured).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                step()
            return _timed_runs(torch, "cuda", graph.replay, warmup, repeats)
        finally:
            graph.reset()


# ------------------------------------------------------------------ helpers
def _rotate(torch: Any, x: Any, cos: Any, sin: Any) -> Any:
    """Rotary embedding, rotate-half form; ``x`` is ``[tokens, heads, head_dim]``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


def _timed_runs(torch: Any, device: str, fn: Any, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    On CUDA each call sits between two CUDA events and is waited for before
    the next, so a run measures the GPU time or the CPU launch time,
    whichever is longer.  On the CPU, ops finish before returning, so
    ``time.perf_counter`` around the call is the whole cost.
    """
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(repeats):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return times
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def _is_out_of_memory(err: RuntimeError) -> bool:
    # torch.cuda.OutOfMemoryError subclasses RuntimeError; the CPU allocator
    # raises a plain RuntimeError saying it cannot allocate.
    text = str(err)
    return type(err).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text
