"""The row plan: which engine iterations ``servesim profile`` measures.

A row is one iteration's batch shape, named the way the calibration CSVs name
it (``shared/calibration/README.md``): ``kind`` (``prefill`` | ``decode`` |
``mixed``), the prompt lengths computed from scratch, the number of decode
sequences and the cached tokens each one reads, and whether the iteration is
replayed as a CUDA graph.  Plans are plain tuples of rows, chosen by name
from ``PLANS``; which rows fit a given device is decided by the runner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from servesim.errors import ConfigError

Kind = Literal["prefill", "decode", "mixed"]


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One iteration to measure.

    kind: ``prefill`` (prompts only), ``decode`` (decodes only) or ``mixed``.
    prefill_lens: each prompt's length, tokens (empty for ``decode``).
    decode_batch: decode sequences (0 for ``prefill``).
    decode_ctx: cached tokens each decode sequence reads (0 for ``prefill``).
    graphed: replay the whole iteration as a CUDA graph (decode rows only in
        the reference data; prefill and mixed rows run eager).
    """

    kind: Kind
    prefill_lens: tuple[int, ...] = ()
    decode_batch: int = 0
    decode_ctx: int = 0
    graphed: bool = False

    def __post_init__(self) -> None:
        # A plan is code, so a malformed row is a servesim bug: fail loudly.
        has_prefill = bool(self.prefill_lens)
        has_decode = self.decode_batch > 0
        expected = {"prefill": (True, False), "decode": (False, True), "mixed": (True, True)}[self.kind]
        if (has_prefill, has_decode) != expected:
            raise ValueError(f"row {self}: kind {self.kind!r} does not match its prompts and decodes")
        if any(n <= 0 for n in self.prefill_lens) or self.decode_batch < 0:
            raise ValueError(f"row {self}: lengths and batch sizes must be positive")
        if has_decode != (self.decode_ctx > 0):
            raise ValueError(f"row {self}: decode_ctx must be > 0 exactly when decode_batch is")

    @property
    def num_prefill_tokens(self) -> int:
        """Prompt tokens computed this iteration."""
        return sum(self.prefill_lens)

    @property
    def num_tokens(self) -> int:
        """Tokens through the linear layers: every prompt token plus one per decode."""
        return self.num_prefill_tokens + self.decode_batch

    @property
    def num_sequences(self) -> int:
        """Sequences in the batch (each gets one row of logits)."""
        return len(self.prefill_lens) + self.decode_batch

    @property
    def prefill_lens_text(self) -> str:
        """Prompt lengths as the CSV writes them: ``512+512``, or ``""`` for none."""
        return "+".join(str(n) for n in self.prefill_lens)

    def label(self) -> str:
        """Short description for progress lines, e.g. ``decode 32x2048 graphed``."""
        parts = []
        lens = self.prefill_lens
        if lens:
            uniform = len(lens) > 1 and len(set(lens)) == 1
            parts.append(f"prefill {len(lens)}x{lens[0]}" if uniform else f"prefill {self.prefill_lens_text}")
        if self.decode_batch:
            parts.append(f"decode {self.decode_batch}x{self.decode_ctx}")
        return " + ".join(parts) + (" graphed" if self.graphed else " eager")


# ------------------------------------------------------------------- plans
# The reference grid (shared/calibration/h100/llama-3-8b_steps.csv).
_SINGLE_PROMPTS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384)
_MULTI_PROMPTS = (
    (512,) * 8,
    (256,) * 16,
    (2048,) * 4,
    (128,) * 32,
    (1024, 256, 64, 8),
)
_DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_DECODE_CONTEXTS = (512, 2048, 8192)
# The reference stops each context's batches at 2**18 cached tokens in all
# (256 x 512, 128 x 2048, 32 x 8192): past that, an 8B model's KV cache
# outgrows what one 80 GB card has left beside the weights.
_MAX_DECODE_CACHED_TOKENS = 2**18
_MIXED = (
    ((512,), 8, 2048),
    ((512,), 32, 2048),
    ((512,), 128, 2048),
    ((2048,), 64, 1024),
    ((256, 256), 16, 4096),
)


def _decode_rows(batches: Iterable[int], contexts: Iterable[int], max_cached: int) -> list[RowSpec]:
    """Eager then graphed rows for each (context, batch) whose cache fits ``max_cached`` tokens."""
    rows = []
    for ctx in contexts:
        for batch in batches:
            if batch * ctx > max_cached:
                continue
            rows.append(RowSpec("decode", (), batch, ctx, graphed=False))
            rows.append(RowSpec("decode", (), batch, ctx, graphed=True))
    return rows


def default_plan() -> tuple[RowSpec, ...]:
    """The reference grid: 13 prefill, 46 decode (23 eager + 23 graphed) and 5 mixed rows."""
    prefill = [RowSpec("prefill", (n,)) for n in _SINGLE_PROMPTS]
    prefill += [RowSpec("prefill", lens) for lens in _MULTI_PROMPTS]
    decode = _decode_rows(_DECODE_BATCHES, _DECODE_CONTEXTS, _MAX_DECODE_CACHED_TOKENS)
    mixed = [RowSpec("mixed", lens, batch, ctx) for lens, batch, ctx in _MIXED]
    return tuple(prefill + decode + mixed)


def quick_plan() -> tuple[RowSpec, ...]:
    """Nine small rows of every kind: a smoke test that runs in seconds on small models."""
    prefill = [RowSpec("prefill", (n,)) for n in (16, 128, 1024)]
    prefill.append(RowSpec("prefill", (64,) * 4))
    decode = [
        RowSpec("decode", (), batch, ctx, graphed) for batch, ctx in ((1, 128), (8, 512)) for graphed in (False, True)
    ]
    return tuple(prefill + decode + [RowSpec("mixed", (256, 256), 4, 512)])


PLANS = {"default": default_plan, "quick": quick_plan}


def plan_rows(name: str) -> tuple[RowSpec, ...]:
    """The rows of the plan called ``name``; ``ConfigError`` naming the known plans if unknown."""
    try:
        return PLANS[name]()
    except KeyError:
        raise ConfigError(f"option --plan: unknown plan {name!r}; known: {', '.join(PLANS)}") from None
