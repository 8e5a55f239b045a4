"""A step model whose steps take longer by phase: steps with prompt tokens x one factor,
pure-decode steps x another.

Several features slow steps by phase: a power cap (a lower clock), LoRA's batched
kernels, a uniform page layout under KV compression.  Their factors multiply, and
the deployment wraps its step model once with the products.
"""

from __future__ import annotations


class PhaseScaledStepModel:
    """``base`` with steps that have prompt tokens x ``prefill_factor`` and pure-decode steps x ``decode_factor``."""

    __slots__ = ("base", "prefill_factor", "decode_factor")

    def __init__(self, base, prefill_factor: float, decode_factor: float) -> None:
        self.base = base
        self.prefill_factor = prefill_factor
        self.decode_factor = decode_factor

    def time_s(self, shape) -> float:
        factor = self.prefill_factor if shape.num_prefill_seqs > 0 else self.decode_factor
        return self.base.time_s(shape) * factor

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        return self.base.decode_time_s(num_decode_seqs, decode_kv_tokens) * self.decode_factor
