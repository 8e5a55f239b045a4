"""Agent programs: closed-loop workloads, Claude Code traces, KV pinning (Continuum) and JCT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import LinearStepModel

import servesim
from servesim.cluster.conservation import check_conservation
from servesim.cluster.pinning import KvPinning
from servesim.cluster.routers import RoundRobinRouter
from servesim.cluster.simulation import ReplicaSetup, Simulation
from servesim.errors import InvariantError, TraceError
from servesim.metrics.records import IN_FLIGHT, RequestTable
from servesim.scheduler.config import SchedulerConfig
from servesim.workload.agent import Call, programs_workload, read_claude_code

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "agentic-claude-code"


def test_programs_become_a_closed_loop_workload():
    programs = [[Call(100, 5, 0.0, (1, 2)), Call(200, 5, 2.5, (1, 2, 3))], [Call(50, 3, 0.0, (1,))]]
    w = programs_workload(programs, np.array([4.0, 1.0]), 64, "test")
    # Rows sort by arrival: program 1's first call (1.0), program 0's (4.0), then the follower (+inf).
    assert w.arrival_s.tolist() == [1.0, 4.0, float("inf")]
    assert w.prompt_tokens.tolist() == [50, 100, 200]
    assert w.follows.tolist() == [-1, -1, 1] and w.think_s.tolist() == [0.0, 0.0, 2.5]
    assert list(w.session_id) == ["1", "0", "0"] and w.priority.tolist() == [1, 0, 0]
    # Block hashes are made global per program.
    assert w.prefix_block_ids[0] == ((1 << 32) | 1,) and w.prefix_block_ids[2] == (1, 2, 3)


def _run(programs, starts, *, num_blocks=1000, pinning=None):
    workload = programs_workload(programs, np.asarray(starts), 16, "test")
    # Program-level first come, first served: a program's calls have its index as priority.
    setup = ReplicaSetup(num_blocks, 16, 100_000, SchedulerConfig(policy="priority"), prefix_block_tokens=16)
    sim = Simulation(workload, setup, 1, RoundRobinRouter(), LinearStepModel())
    sim.pinning = pinning
    out = sim.run()
    check_conservation(out.requests, sim.replicas, None)
    return out


def test_a_call_is_sent_its_think_time_after_the_previous_finishes():
    # Call 1: 100 tokens (0.11 s) + 1 more output token (0.011 s): done at 0.121 s.
    # Call 2 goes out 2 s later, shares the first 96 tokens (6 full blocks of 16).
    out = _run([[Call(100, 2, 0.0, tuple(range(7))), Call(150, 1, 2.0, tuple(range(6)) + (50, 51, 52, 53))]], [0.0])
    t = out.requests
    first_done = 0.01 + 0.001 * 100 + (0.01 + 0.001)
    assert t.finish_s[0] == pytest.approx(first_done)
    assert t.arrival_s[1] == pytest.approx(first_done + 2.0)
    assert t.cached_tokens[1] == 96
    assert t.first_token_s[1] == pytest.approx(first_done + 2.0 + 0.01 + 0.001 * (150 - 96))


def test_pinning_keeps_a_context_through_memory_pressure():
    """Program 0 (160 tokens, 10 blocks) then a 5 s tool call; program 1's 320-token call arrives
    meanwhile on a 24-block cache and needs 20 blocks, evicting program 0's idle entries unless
    they are pinned for 10 s. Program 0 comes first (priority), so its second call, once sent,
    is admitted ahead of program 1's waiting one."""
    programs = [[Call(160, 1, 0.0, tuple(range(10))), Call(170, 1, 5.0, tuple(range(10)) + (99,))],
                [Call(320, 1, 0.0, tuple(range(100, 120)))]]
    plain = _run(programs, [0.0, 1.0], num_blocks=24)
    pinned = _run(programs, [0.0, 1.0], num_blocks=24, pinning=KvPinning("fixed", 10.0))
    second = lambda out: out.requests.cached_tokens[np.flatnonzero(out.requests.prompt_tokens == 170)[0]]  # noqa: E731
    assert second(plain) == 0
    assert second(pinned) == 160
    # While pinned, program 1 waits for room: it is admitted when the pin ends (at 10.111 s).
    late = pinned.requests.first_scheduled_s[pinned.requests.prompt_tokens == 320][0]
    assert late == pytest.approx(0.01 + 0.001 * 160 + 10.0)


def test_predicted_ttl_follows_the_programs_gaps():
    pin = KvPinning("predicted", ttl_s=4.0, scale=1.5, max_ttl_s=10.0)
    assert pin.ttl_for("a") == pytest.approx(6.0)  # nothing seen yet: 1.5 x ttl_s
    pin.observe("a", 2.0)
    pin.observe("a", 4.0)
    assert pin.ttl_for("a") == pytest.approx(1.5 * 3.0)
    assert pin.ttl_for("b") == pytest.approx(1.5 * 3.0)  # a new program: the run's mean so far
    pin.observe("b", 30.0)
    assert pin.ttl_for("b") == 0.0  # predicted 30 s > 10 s: not worth holding
    assert KvPinning("fixed", ttl_s=7.0).ttl_for("a") == 7.0


def test_program_jct_by_hand():
    out = servesim.simulate({
        "workload": {"kind": "agent", "num_programs": 3, "arrival": {"process": "constant", "rate_rps": 0.01},
                     "turns": {"dist": "fixed", "value": 3}, "first_prompt_tokens": {"dist": "fixed", "value": 500},
                     "added_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 20},
                     "tool_time": {"median_s": 2.0, "sigma": 0.0}},
    })
    t, s = out.requests, out.summary
    assert s["programs"]["count"] == 3 and s["programs"]["completed"] == 3
    program = np.asarray(servesim.api.build_workload(out.config.workload, servesim.core.rng.RandomStreams(0)).session_id)[t.request_id]
    jct = [t.finish_s[program == p].max() - t.arrival_s[program == p].min() for p in ("0", "1", "2")]
    assert s["programs"]["jct_s"]["mean"] == pytest.approx(np.mean(jct))
    # Each program: three calls, two tool calls of 2 s between them.
    assert min(jct) > 4.0


def test_a_stalled_run_is_an_invariant_error():
    table = RequestTable(request_id=[0], arrival_s=[0.0], prompt_tokens=[10], output_tokens=[5], tokens_generated=[0],
                         replica=[0], status=[IN_FLIGHT], reject_reason=[""], first_scheduled_s=[np.nan],
                         first_token_s=[np.nan], finish_s=[np.nan], max_itl_s=[np.nan], num_preemptions=[0])
    with pytest.raises(InvariantError, match="stalled run"):
        check_conservation(table, [], None)


def _conversation(name, requests):
    return {"id": name, "block_size": 64, "requests": requests}


def test_claude_code_traces_flatten_subagents_in_place(tmp_path):
    sub = {"type": "subagent", "requests": [{"t": 0, "in": 300, "out": 10, "hash_ids": [9], "think_time": 0.5}]}
    conv = _conversation("a", [{"t": 0, "type": "n", "in": 100, "out": 0, "hash_ids": [1, 2], "think_time": 0.0},
                               sub, {"t": 9, "type": "n", "in": 200, "out": 7, "hash_ids": [1, 2, 3], "think_time": 4.0}])
    (tmp_path / "trace_0001.json").write_text(json.dumps(conv))
    programs, block = read_claude_code(tmp_path)
    assert block == 64
    assert [(c.prompt_tokens, c.output_tokens, c.think_s) for c in programs[0]] == [(100, 1, 0.0), (300, 10, 0.5), (200, 7, 4.0)]
    (tmp_path / "trace_0002.json").write_text("{not json")
    with pytest.raises(TraceError, match="trace_0002.json: not JSON"):
        read_claude_code(tmp_path)


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/traces/agentic-claude-code")
def test_the_shared_claude_code_samples_run():
    s = servesim.simulate({
        "workload": {"kind": "agent", "source": "claude_code", "path": str(SHARED), "num_programs": 4},
        "cluster": {"model": "qwen2.5-7b", "prefix_caching": True},
        "catalog": {"models": {"qwen2.5-7b": {"max_context": 131072}}},
    }).summary
    assert s["programs"]["count"] == 4 and s["prefix_cache_hit_rate"] > 0.5


def test_pinning_starts_at_the_min_turn():
    class Cache:
        def __init__(self):
            self.pins = []

        def pin(self, pin_id, block_ids):
            self.pins.append(pin_id)
            return len(block_ids)

    class Loop:
        def schedule(self, *args):
            pass

    class Replica:
        def __init__(self):
            self.scheduler = type("S", (), {"prefix_cache": Cache()})()

    replica, pin = Replica(), KvPinning("fixed", 5.0, min_turns=2)
    call = type("Seq", (), {"session": "a", "prefix": (1, 2)})()
    pin.pin(call, replica, 0.0, Loop())  # the program's first finished call: not pinned
    pin.pin(call, replica, 1.0, Loop())
    assert replica.scheduler.prefix_cache.pins == [-1] and pin.num_pins == 1


def test_programs_are_written_one_row_each(tmp_path):
    import pyarrow.parquet as pq

    result = servesim.simulate({"workload": {"kind": "agent", "num_programs": 4, "turns": {"dist": "fixed", "value": 2},
                                             "first_prompt_tokens": {"dist": "fixed", "value": 1000}}})
    paths = result.write(tmp_path)
    table = pq.read_table(paths["programs"]).to_pydict()
    assert table["program"] == ["0", "1", "2", "3"] and table["calls"] == [2, 2, 2, 2] and all(table["completed"])
    assert np.mean(table["jct_s"]) == pytest.approx(result.summary["programs"]["jct_s"]["mean"])


def test_claude_code_file_that_is_not_utf8_is_a_trace_error(tmp_path):
    from servesim.workload.agent import read_claude_code

    (tmp_path / "a.json").write_bytes(b'{"requests": []}\xff')
    with pytest.raises(TraceError, match=r"a\.json: not UTF-8 text \(invalid start byte at byte 16\)"):
        read_claude_code(tmp_path)
