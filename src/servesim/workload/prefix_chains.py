"""Prefix-block hash chains for workloads whose traces carry none.

Prefix caching (``servesim.kvcache.prefix_cache``) matches prompts by
chains of block hashes.  Traces such as Mooncake's carry their own; for the
others they are derived here, ``block_tokens`` tokens per block:

* **Shared system prompts** (``with_system_prompts``): each request's prompt
  is prefixed by one of ``count`` system prompts of ``tokens`` tokens,
  drawn with Zipf(``zipf``) popularity (0: uniform).  The system prompt's
  full blocks get the same hashes in every request that uses it; the rest
  of the prompt (its last partial system block onwards) gets hashes of its
  own.
* **Session turns** (``session_chains``): in a conversation each turn's
  prompt holds the previous turn's prompt and answer, then the new message.
  A turn's chain repeats the previous turn's chain over the full blocks of
  the previous prompt (the smaller of the two prompts), then continues with
  fresh hashes: the cache files prompts only, so the previous answer's KV
  is computed again (conservative).  Requests without a session get fresh
  hashes only.

* **RAG prompts** (``rag_prompts``): retrieved chunks, then the question;
  the chunk ids feed a chunk cache (``servesim.kvcache.chunk_cache``), the
  chains prefix caching.

Fresh hashes are unique integers; a workload's chains and
``prefix_block_size`` are set together.
"""

from __future__ import annotations

import dataclasses
from itertools import count as counter

import numpy as np

from servesim.workload.request import Workload


def with_system_prompts(
    workload: Workload, rng: np.random.Generator, *, count: int, tokens: int, zipf: float, block_tokens: int
) -> Workload:
    """``workload`` with a system prompt of ``tokens`` tokens prefixed to every prompt (chains included)."""
    n = len(workload)
    ranks = np.arange(1, count + 1, dtype=np.float64)
    weights = ranks ** -zipf if zipf > 0 else np.ones(count)
    chosen = rng.choice(count, size=n, p=weights / weights.sum())
    shared_blocks = tokens // block_tokens
    prompts = workload.prompt_tokens + tokens
    fresh = counter(count * shared_blocks)  # system prompt i's block j is i * shared_blocks + j
    chains = []
    for i in range(n):
        head = [int(chosen[i]) * shared_blocks + j for j in range(shared_blocks)]
        total = -(-int(prompts[i]) // block_tokens)
        chains.append(tuple(head + [next(fresh) for _ in range(total - shared_blocks)]))
    return dataclasses.replace(workload, prompt_tokens=prompts, prefix_block_ids=chains, prefix_block_size=block_tokens)


def session_chains(workload: Workload, block_tokens: int) -> Workload:
    """``workload`` with chains that continue each session's previous turn (see the module doc)."""
    if workload.session_id is None:
        raise ValueError("session chains need a workload with session ids")
    fresh = counter()
    last: dict[object, tuple[tuple[int, ...], int]] = {}  # session -> (its last chain, that prompt's tokens)
    chains = []
    for i in range(len(workload)):
        prompt = int(workload.prompt_tokens[i])
        session = workload.session_id[i]
        keep: tuple[int, ...] = ()
        if session is not None and session == session and session in last:  # not None, not NaN
            previous, previous_prompt = last[session]
            shared = min(prompt, previous_prompt) // block_tokens
            keep = previous[:shared]
        total = -(-prompt // block_tokens)
        chain = keep + tuple(next(fresh) for _ in range(total - len(keep)))
        chains.append(chain)
        if session is not None and session == session:
            last[session] = (chain, prompt)
    return dataclasses.replace(workload, prefix_block_ids=chains, prefix_block_size=block_tokens)


def rag_prompts(
    workload: Workload,
    rng: np.random.Generator,
    *,
    num_chunks: int,
    chunks_per_request: int,
    chunk_tokens: int,
    zipf: float,
    block_tokens: int,
) -> Workload:
    """``workload`` as RAG prompts: each prompt is ``chunks_per_request`` distinct chunks (of
    ``num_chunks``, Zipf(``zipf``)-popular, in the retriever's random order) of ``chunk_tokens``
    tokens, then its own prompt as the question.  Sets ``chunk_ids`` and prefix chains: a block
    inside the chunks hashes the chunks up to its end (so equal leading chunks share blocks);
    blocks that reach the question are fresh."""
    n = len(workload)
    ranks = np.arange(1, num_chunks + 1, dtype=np.float64)
    weights = ranks ** -zipf if zipf > 0 else np.ones(num_chunks)
    weights /= weights.sum()
    region = chunks_per_request * chunk_tokens
    prompts = workload.prompt_tokens + region
    ids: dict[tuple, int] = {}
    fresh = counter(1 << 40)  # far from the shared ids
    chunk_ids, chains = [], []
    for i in range(n):
        chosen = tuple(int(c) for c in rng.choice(num_chunks, size=chunks_per_request, replace=False, p=weights))
        chunk_ids.append(chosen)
        chain = []
        for j in range(-(-int(prompts[i]) // block_tokens)):
            end = (j + 1) * block_tokens  # the block's last token is end - 1
            if end <= region:
                last = (end - 1) // chunk_tokens
                key = (chosen[: last + 1], end - last * chunk_tokens)
                chain.append(ids.setdefault(key, len(ids)))
            else:
                chain.append(next(fresh))
        chains.append(tuple(chain))
    return dataclasses.replace(workload, prompt_tokens=prompts, chunk_ids=chunk_ids, chunk_tokens=chunk_tokens,
                               prefix_block_ids=chains, prefix_block_size=block_tokens)
