"""How much memory profiling a row takes, so rows that cannot fit are skipped up front.

The estimates follow the decoder both backends build (one weight set of
``num_layers`` layers, a contiguous KV cache per decode row) and err on the
large side: a row skipped for memory is reported, while a row that runs out
of memory half-way wastes the user's time.  Sizes are bytes; ``elem_bytes``
is the activation and weight element size (2 for bf16, 4 for float32).
"""

from __future__ import annotations

from servesim.perf.model_spec import ModelSpec
from servesim.profile.rows import RowSpec

# Activation copies the allocator may hold at once (inputs, outputs and
# temporaries of adjacent kernels).
_ACTIVATION_SLACK = 2
# Attention score elements the numpy backend materialises at once per query
# block (see numpy_backend._PREFILL_SCORE_ELEMS), counted in float32.
_SCORE_BLOCK_BYTES = 4 * 2**23
# Share of free memory the profiler plans to use: the rest covers the
# framework's own workspaces (cuBLAS, allocator fragmentation, CUDA graphs).
_USABLE_FRACTION = 0.85


def weight_bytes(model: ModelSpec, num_layers: int, elem_bytes: int) -> int:
    """Bytes of the random weights: embeddings, lm_head, ``num_layers`` layers, final norm."""
    h, inter = model.hidden_size, model.intermediate_size
    q_dim = model.num_heads * model.head_dim  # type: ignore[operator]
    kv_dim = model.num_kv_heads * model.head_dim  # type: ignore[operator]
    qkv = h * (q_dim + 2 * kv_dim) + (q_dim + 2 * kv_dim if model.attention_bias else 0)
    layer = qkv + q_dim * h + 3 * h * inter + 2 * h
    embeddings = (1 if model.tie_embeddings else 2) * model.vocab_size * h
    return (embeddings + num_layers * layer + h) * elem_bytes


def row_bytes(model: ModelSpec, row: RowSpec, num_layers: int, elem_bytes: int) -> int:
    """Bytes one row needs beside the weights: KV cache, activations, attention work, logits."""
    h, inter = model.hidden_size, model.intermediate_size
    heads, kv_heads, head_dim = model.num_heads, model.num_kv_heads, model.head_dim
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim  # type: ignore[operator]
    # The cache holds decode_ctx tokens plus the one each decode writes.
    cache = num_layers * row.decode_batch * (row.decode_ctx + 1) * 2 * kv_dim
    # Per token: residual, normed input, qkv, attention output, gate+up, activated.
    activations = row.num_tokens * (2 * h + q_dim + 2 * kv_dim + q_dim + 3 * inter) * _ACTIVATION_SLACK
    # Without native GQA a prompt's keys and values are widened to every head.
    longest = max(row.prefill_lens, default=0)
    widened_kv = 2 * longest * q_dim
    decode_scores = row.decode_batch * heads * (row.decode_ctx + 1)
    rotary = 2 * (max(longest, row.decode_ctx + 1)) * head_dim  # type: ignore[operator]
    elems = cache + activations + widened_kv + decode_scores + rotary
    logits = row.num_sequences * model.vocab_size * 4  # float32 for the softmax-ready copy
    return elems * elem_bytes + logits + (_SCORE_BLOCK_BYTES if longest else 0)


def usable_bytes(free_bytes: float) -> float:
    """The part of ``free_bytes`` the profiler plans to fill."""
    return free_bytes * _USABLE_FRACTION
