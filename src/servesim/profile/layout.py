"""Where each sequence's tokens sit in one iteration's flat token batch.

Both backends run the same iteration (``shared/calibration/README.md``): all
tokens go through the linear layers as one ``[num_tokens, hidden]`` matrix,
prompts first (each contiguous, in row order), then one token per decode
sequence.  Attention then slices that matrix per sequence, and logits are
taken at each sequence's last token.  This module computes those indices,
and the rotary angles at each token's position, once per row and
framework-free, so the two backends cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.profile.rows import RowSpec

# Llama's rotary base; the value changes the numbers, not the work.
_ROPE_THETA = 10_000.0


@dataclass(frozen=True, slots=True)
class TokenLayout:
    """Indices into the flat token batch of one iteration.

    prefill_spans: ``(start, end)`` token range of each prompt (end exclusive).
    decode_start: index of the first decode token; decodes fill
        ``decode_start .. num_tokens - 1``, one token each.
    num_decodes: decode sequences; each reads ``decode_ctx`` cached tokens.
    decode_ctx: cached tokens per decode sequence.
    positions: int64 ``[num_tokens]``, each token's position in its sequence
        (prompts count from 0; a decode token sits at ``decode_ctx``).
    last_token: int64 ``[num_sequences]``, the token whose logits are computed
        (each prompt's last, then every decode token).
    """

    prefill_spans: tuple[tuple[int, int], ...]
    decode_start: int
    num_decodes: int
    decode_ctx: int
    positions: np.ndarray
    last_token: np.ndarray

    @classmethod
    def of(cls, row: RowSpec) -> TokenLayout:
        """The layout of ``row``'s iteration."""
        spans = []
        start = 0
        for length in row.prefill_lens:
            spans.append((start, start + length))
            start += length
        prompt_positions = [np.arange(n, dtype=np.int64) for n in row.prefill_lens]
        decode_positions = np.full(row.decode_batch, row.decode_ctx, dtype=np.int64)
        positions = np.concatenate([*prompt_positions, decode_positions])
        last = [end - 1 for _, end in spans] + list(range(start, start + row.decode_batch))
        return cls(
            prefill_spans=tuple(spans),
            decode_start=start,
            num_decodes=row.decode_batch,
            decode_ctx=row.decode_ctx,
            positions=positions,
            last_token=np.asarray(last, dtype=np.int64),
        )

    @property
    def num_tokens(self) -> int:
        """Tokens in the iteration."""
        return self.decode_start + self.num_decodes

    @property
    def max_position(self) -> int:
        """Largest position any token holds (sizes the rotary tables)."""
        return int(self.positions.max()) if self.positions.size else 0


def rotary_tables(positions: np.ndarray, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and sine of each token's rotary angles, float32 ``[num_tokens, head_dim // 2]``."""
    inv_freq = _ROPE_THETA ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
