"""Workload.take keeps every column and the metadata."""

from __future__ import annotations

import numpy as np

from servesim.workload import Request, Workload


def test_take_positions_and_mask():
    w = Workload.from_requests(
        [Request(0, 1, 2, session_id="a", prefix_block_ids=(1,)), Request(1, 3, 4, model="m"), Request(2, 5, 6)],
        source="hand",
    )
    w = Workload(**{**w.__dict__, "skipped": {"x": 1}})
    sub = w.take(np.array([True, False, True]))
    assert sub.prompt_tokens.tolist() == [1, 5] and sub.output_tokens.tolist() == [2, 6]
    assert sub.session_id.tolist() == ["a", None] and sub.model.tolist() == [None, None]
    assert sub.prefix_block_ids == [(1,), ()]
    assert sub.source == "hand" and sub.skipped == {"x": 1}
    assert sub.request(1) == Request(2.0, 5, 6)
    assert len(w.take(np.array([], dtype=np.int64))) == 0
