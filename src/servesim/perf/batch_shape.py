"""``BatchShape``: what the step-time model needs to know about one engine step.

The scheduler builds one per step (millions per run), so it is a bare
``__slots__`` class with no validation; ``BatchShape.build`` is the checked,
convenient constructor for tests and hand-made batches.
"""

from __future__ import annotations

from collections.abc import Iterable

# The fields, in constructor order.
_FIELDS = (
    "num_tokens",
    "num_seqs",
    "num_prefill_seqs",
    "prefill_attn_pairs",
    "prefill_kv_tokens",
    "num_decode_seqs",
    "decode_kv_tokens",
)


class BatchShape:
    """Token and attention counts of one step (all sequences of the batch).

    num_tokens: new tokens computed this step (prefill chunk tokens + one per
        decode sequence).
    num_seqs: sequences in the batch.
    num_prefill_seqs: sequences computing prompt tokens (a prompt chunk).
    prefill_attn_pairs: query-key pairs of the prefill chunks; a chunk of
        ``q`` new tokens after ``c`` cached ones has ``q*c + q*(q+1)/2``.
    prefill_kv_tokens: KV tokens the prefill chunks attend to, sum of ``c + q``.
    num_decode_seqs: sequences generating one token.
    decode_kv_tokens: KV tokens the decode sequences read, the sum of their
        context lengths including the new token.
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        num_tokens: int,
        num_seqs: int,
        num_prefill_seqs: int,
        prefill_attn_pairs: int,
        prefill_kv_tokens: int,
        num_decode_seqs: int,
        decode_kv_tokens: int,
    ) -> None:
        self.num_tokens = num_tokens
        self.num_seqs = num_seqs
        self.num_prefill_seqs = num_prefill_seqs
        self.prefill_attn_pairs = prefill_attn_pairs
        self.prefill_kv_tokens = prefill_kv_tokens
        self.num_decode_seqs = num_decode_seqs
        self.decode_kv_tokens = decode_kv_tokens

    @classmethod
    def build(
        cls,
        prefill_chunks: Iterable[tuple[int, int]] = (),
        decode_context_lens: Iterable[int] = (),
    ) -> BatchShape:
        """The shape of a batch given as its parts.

        prefill_chunks: ``(cached_tokens, new_tokens)`` per prefill sequence
            (``cached >= 0``, ``new >= 1``).
        decode_context_lens: per decode sequence, its context length
            including the token generated this step (``>= 1``).
        """
        num_tokens = num_prefill = pairs = prefill_kv = 0
        for cached, new in prefill_chunks:
            if cached < 0 or new < 1:
                raise ValueError(f"prefill chunk needs cached >= 0 and new >= 1, got ({cached}, {new})")
            num_prefill += 1
            num_tokens += new
            pairs += new * cached + new * (new + 1) // 2
            prefill_kv += cached + new
        contexts = list(decode_context_lens)
        if any(c < 1 for c in contexts):
            raise ValueError("decode context lengths must be >= 1")
        num_decode = len(contexts)
        return cls(
            num_tokens + num_decode,
            num_prefill + num_decode,
            num_prefill,
            pairs,
            prefill_kv,
            num_decode,
            sum(contexts),
        )

    @property
    def is_pure_decode(self) -> bool:
        """True when no sequence computes prompt tokens."""
        return self.num_prefill_seqs == 0

    def _key(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchShape):
            return NotImplemented
        return self._key() == other._key()

    # Mutable (the scheduler may reuse one), so deliberately unhashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in _FIELDS)
        return f"BatchShape({fields})"
