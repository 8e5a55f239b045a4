"""Derived prefix-block chains: shared system prompts and session turns."""

from __future__ import annotations

import numpy as np
import pytest

import servesim
from servesim.errors import ConfigError
from servesim.workload.prefix_chains import session_chains, with_system_prompts
from servesim.workload.request import Request, Workload


class FixedChoice:
    """A generator whose choice() returns given indices."""

    def __init__(self, picks):
        self.picks = np.asarray(picks)

    def choice(self, n, size, p):
        assert n == 2 and size == len(self.picks) and p.sum() == pytest.approx(1.0)
        return self.picks


def test_system_prompts_prefix_prompts_and_share_their_full_blocks():
    w = Workload.from_requests([Request(0.0, 50, 1), Request(1.0, 10, 1), Request(2.0, 40, 1)])
    out = with_system_prompts(w, FixedChoice([0, 1, 0]), count=2, tokens=100, zipf=0.0, block_tokens=32)
    assert out.prompt_tokens.tolist() == [150, 110, 140]
    assert out.prefix_block_size == 32
    # 100 tokens: 3 full shared blocks (ids 0-2 for prompt 0, 3-5 for prompt 1), then fresh ids from 6.
    assert out.prefix_block_ids[0] == (0, 1, 2, 6, 7)  # ceil(150 / 32) = 5 blocks
    assert out.prefix_block_ids[1] == (3, 4, 5, 8)  # ceil(110 / 32) = 4
    assert out.prefix_block_ids[2] == (0, 1, 2, 9, 10)


def test_zipf_popularity_favours_the_first_prompts():
    w = Workload.from_requests([Request(float(i), 10, 1) for i in range(4000)])
    out = with_system_prompts(w, np.random.default_rng(0), count=4, tokens=64, zipf=1.0, block_tokens=64)
    first = [chain[0] for chain in out.prefix_block_ids]
    shares = np.bincount(first, minlength=4) / 4000
    expected = np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (1 + 1 / 2 + 1 / 3 + 1 / 4)
    assert np.abs(shares - expected).max() < 0.03


def test_session_turns_continue_the_previous_prompt():
    w = Workload.from_requests([
        Request(0.0, 100, 5, session_id="a"),
        Request(1.0, 70, 5, session_id="b"),
        Request(2.0, 250, 5, session_id="a"),  # shares min(250, 100) // 32 = 3 blocks of turn 1
        Request(3.0, 40, 5),  # no session: fresh
        Request(4.0, 60, 5, session_id="a"),  # shorter than the last turn: min(60, 250) // 32 = 1 block
    ])
    out = session_chains(w, 32)
    c = out.prefix_block_ids
    assert c[0] == (0, 1, 2, 3)
    assert c[1] == (4, 5, 6)
    assert c[2] == (0, 1, 2) + (7, 8, 9, 10, 11)  # ceil(250 / 32) = 8 blocks
    assert c[3] == (12, 13)
    assert c[4] == (0, 13 + 1)


def test_a_shared_system_prompt_is_computed_once():
    """Ten requests 10 s apart with one 1,024-token system prompt (16 blocks of 64) and 100 tokens
    of their own: the first computes everything; each later one finds the 16 system blocks."""
    s = servesim.simulate({
        "workload": {"kind": "synthetic", "num_requests": 10, "arrival": {"process": "constant", "rate_rps": 0.1},
                     "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 5},
                     "system_prompts": {"count": 1, "tokens": 1024}, "prefix_block_tokens": 64},
        "cluster": {"prefix_caching": True},
    }).summary
    blocks_each = -(-1124 // 64)  # 18
    assert s["prefix_cache_hit_rate"] == pytest.approx(9 * 16 / (10 * blocks_each))
    assert s["prefix_cached_tokens"] == 9 * 1024


def test_session_prefixes_need_sessions():
    with pytest.raises(ConfigError, match="has no session ids"):
        servesim.simulate({"workload": {"kind": "synthetic", "num_requests": 5, "arrival": {"process": "poisson", "rate_rps": 1},
                                        "prompt_tokens": {"dist": "fixed", "value": 10}, "output_tokens": {"dist": "fixed", "value": 5},
                                        "session_prefixes": True}})
