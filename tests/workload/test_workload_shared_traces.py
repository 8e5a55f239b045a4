"""Optional checks on the real traces in ../shared (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.workload import read_trace, trace_stats

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "traces"


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def test_mooncake_conversation_prefix_reuse():
    w = read_trace(shared("mooncake/conversation_trace.jsonl"))
    assert len(w) == 12031 and w.skipped == {}
    s = trace_stats(w)
    # The shared README: with an unlimited cache, 36.6% of blocks were seen before.
    assert s["prefix_reuse_fraction"] == pytest.approx(0.366, abs=0.001)
    assert s["num_prefix_blocks"] == 288500


@pytest.mark.parametrize("name, rows", [("AzureLLMInferenceTrace_conv.csv", 19366), ("AzureLLMInferenceTrace_code.csv", 8819)])
def test_azure_2023_files(name, rows):
    w = read_trace(shared(f"azure-2023/{name}"))
    assert len(w) + sum(w.skipped.values()) == rows
