"""Fakes for the simulator's seams, shared by tests."""

from __future__ import annotations


class LinearStepModel:
    """Step time = base + per_token * new tokens + per_kv * decode KV tokens (seconds).

    Scalar and vector paths do the same float operations in the same order,
    as the real model's contract requires.
    """

    def __init__(self, base_s: float = 0.01, per_token_s: float = 0.001, per_kv_token_s: float = 0.0) -> None:
        self.base_s = base_s
        self.per_token_s = per_token_s
        self.per_kv_token_s = per_kv_token_s

    def time_s(self, shape) -> float:
        return self.base_s + self.per_token_s * shape.num_tokens + self.per_kv_token_s * shape.decode_kv_tokens

    def decode_time_s(self, num_decode_seqs: int, decode_kv_tokens: int) -> float:
        return self.base_s + self.per_token_s * num_decode_seqs + self.per_kv_token_s * decode_kv_tokens
