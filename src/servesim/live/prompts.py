"""Deterministic prompts for a replay: token ids by default, or text of about as many tokens.

Token ids: request ``r`` sends ``prompt_tokens[r]`` ids, each in ``[FIRST_ID, END_ID)`` (clear of
the special tokens at the low end of most vocabularies, and inside any vocabulary of 30,000 ids or
more), drawn from numpy generators seeded by the scenario's seed:

* a request with prefix blocks (``Workload.prefix_block_ids``, ``prefix_block_size`` tokens each,
  each id standing for its whole prefix) takes block ``k``'s tokens from the generator seeded by
  ``(seed, BLOCK, id_k)``, so requests whose chains share their first ``k`` ids share their first
  ``k x prefix_block_size`` token ids, as a prefix cache would see them;
* the tokens after the chain (all of them without one) come from ``(seed, REQUEST, r)``;
* a chain covering more than the prompt is cut at the prompt's length.

Text (``--prompt text``): each id ``t`` becomes the word ``WORDS[t % len(WORDS)]``, words joined by
single spaces.  Every word is one token, with its leading space, in the common BPE vocabularies
(GPT-2, Llama, Mistral, Qwen), so the text is about ``prompt_tokens`` tokens (a tokenizer may add
a BOS token), and shared token-id prefixes are shared text prefixes.

The same seed, workload and request id always give the same prompt.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from servesim.workload.request import Workload

#: Prompt token ids are drawn from ``[FIRST_ID, END_ID)``.
FIRST_ID = 1000
END_ID = 30000
# Seed domains: a block's tokens and a request's own tokens never share a stream.
BLOCK, REQUEST = 1, 2
_MASK_64 = (1 << 64) - 1

#: Words of ``--prompt text``: one token each (with a leading space) in the common BPE vocabularies.
WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
    "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
    "who", "so", "no", "time", "people", "year", "way", "day", "man", "world", "life", "work", "part", "place",
    "case", "week", "system", "number", "group",
)


class PromptMaker:
    """The prompts of one workload under one seed (see the module docstring)."""

    def __init__(self, workload: Workload, seed: int, cached_blocks: int = 4096) -> None:
        self._prompt_tokens = workload.prompt_tokens
        self._chains = workload.prefix_block_ids
        self._block_size = workload.prefix_block_size or 0
        self._seed = int(seed) & _MASK_64
        self._block = lru_cache(maxsize=cached_blocks)(self._draw_block)

    def token_ids(self, row: int) -> list[int]:
        """The prompt of workload row ``row`` as token ids."""
        n = int(self._prompt_tokens[row])
        chain = self._chains[row] if self._chains is not None and self._block_size else ()
        parts, have = [], 0
        for block_id in chain:
            if have >= n:
                break
            parts.append(self._block(int(block_id)))
            have += self._block_size
        if have < n:
            parts.append(_draw(self._seed, REQUEST, row, n - have))
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return ids[:n].tolist()

    def text(self, row: int) -> str:
        """The prompt of workload row ``row`` as text: one word per token id."""
        return " ".join(WORDS[t % len(WORDS)] for t in self.token_ids(row))

    def _draw_block(self, block_id: int) -> np.ndarray:
        return _draw(self._seed, BLOCK, block_id, self._block_size)


def _draw(seed: int, domain: int, key: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, domain, int(key) & _MASK_64]))
    return rng.integers(FIRST_ID, END_ID, size=count, dtype=np.int64)
