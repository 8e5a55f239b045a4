"""``servesim replay`` against a fake OpenAI-compatible server with known timings (TTFT 20 ms, 5 ms
per token): pacing, token counting, failures recorded with their reasons, closed loops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from live.replay_fakes import FakeEngine, free_port, serving
from servesim.config import load_config
from servesim.core.rng import RandomStreams
from servesim.live.prompts import END_ID, FIRST_ID, WORDS, PromptMaker
from servesim.live.replay import ReplayOptions, replay
from servesim.metrics.records import FAILED, FINISHED
from servesim.workload.builder import build_workload

TTFT, TPOT = 0.02, 0.005
SLACK_S = 0.25  # a slow, shared 2-core box: what the client may add to the server's own timing


def mooncake(tmp_path, rows) -> str:
    """A scenario replaying a Mooncake trace of ``(ms, prompt, output, hash_ids)`` rows; its path."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": p, "output_length": o, "hash_ids": h}) + "\n"
                             for t, p, o, h in rows))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"name": "fake", "seed": 4,
                                        "workload": {"kind": "trace", "path": str(trace), "format": "mooncake"}}))
    return str(scenario)


def by_output(engine: FakeEngine) -> dict[int, dict]:
    return {body["max_tokens"]: body for body in engine.bodies}


def test_arrivals_follow_the_scenario_at_the_time_scale(tmp_path):
    rows = [(0, 600, 4, [1, 2]), (200, 700, 6, [1, 3]), (400, 64, 5, [7]), (600, 32, 8, [9])]
    engine = FakeEngine(TTFT, TPOT)
    with serving(engine) as url:
        result = replay(load_config(mooncake(tmp_path, rows)), ReplayOptions(url, time_scale=2.0))
    r = result.requests
    assert r.request_id.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(r.arrival_s, [0.0, 0.1, 0.2, 0.3], rtol=0, atol=1e-12)  # scenario time / 2
    lag = result.sent_s - r.arrival_s
    assert (lag > -1e-3).all() and (lag < 0.05).all(), lag
    assert np.all(np.abs(np.diff(engine.arrivals) - 0.1) < 0.05), np.diff(engine.arrivals)
    assert r.status.tolist() == [FINISHED] * 4 and r.reject_reason.tolist() == [""] * 4
    assert r.tokens_generated.tolist() == [4, 6, 5, 8]
    ttft = r.first_token_s - result.sent_s
    assert (ttft >= TTFT).all() and (ttft < TTFT + SLACK_S).all(), ttft
    e2e = r.finish_s - result.sent_s  # the server's last token is due TTFT + (n - 1) x TPOT after it got the request
    floor = TTFT + (r.output_tokens - 1) * TPOT
    assert (e2e >= floor).all() and (e2e < floor + SLACK_S).all(), (e2e, floor)
    times = result.token_times
    for rid, n in zip(r.request_id, r.output_tokens):
        mine = times["request_id"] == rid
        assert times["token_index"][mine].tolist() == list(range(n))
        t = times["time_s"][mine]
        assert t[0] == r.first_token_s[rid] and t[-1] == r.finish_s[rid] and (np.diff(t) >= 0).all()
        assert r.max_itl_s[rid] == np.diff(t).max()
    bodies = by_output(engine)
    for _, prompt_len, out, _ in rows:
        body = bodies[out]
        assert {k: v for k, v in body.items() if k != "prompt"} == {
            "model": "fake-model", "max_tokens": out, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True, "temperature": 0, "return_token_ids": True}
        assert len(body["prompt"]) == prompt_len and all(FIRST_ID <= t < END_ID for t in body["prompt"])
    first, second = bodies[4]["prompt"], bodies[6]["prompt"]
    assert first[:512] == second[:512]  # block 1 (512 tokens) shared
    assert first[512:600] != second[512:600]  # blocks 2 and 3 differ
    assert result.summary["replay"]["usage_prompt_mismatches"] == 0


def test_coalesced_chunks_are_counted_from_token_ids(tmp_path):
    engine = FakeEngine(TTFT, TPOT, tokens_per_chunk=3)
    with serving(engine) as url:
        result = replay(load_config(mooncake(tmp_path, [(0, 40, 8, [1])])), ReplayOptions(url))
    t = result.token_times["time_s"]
    assert len(t) == 8 and result.requests.tokens_generated.tolist() == [8]
    assert t[0] == t[1] == t[2] < t[3] == t[4] == t[5] < t[6] == t[7]  # chunks of 3, 3 and 2 tokens
    assert result.requests.status.tolist() == [FINISHED]
    assert result.requests.finish_s[0] - result.sent_s[0] >= TTFT + 7 * TPOT
    assert result.summary["replay"]["tokens_counted_from"] == {"token_ids": 1, "text_chunks": 0, "usage": 0}


def test_text_chunks_and_text_prompts(tmp_path):
    """Without token_ids a chunk counts once, and the usage block's count is kept; --prompt text
    sends one word per token id."""
    engine = FakeEngine(TTFT, TPOT, tokens_per_chunk=2, token_ids=False, cached_tokens=16)
    config = load_config(mooncake(tmp_path, [(0, 40, 6, [1])]))
    with serving(engine) as url:
        result = replay(config, ReplayOptions(url, prompt="text", token_ids=False))
    r = result.requests
    assert r.status.tolist() == [FINISHED] and r.tokens_generated.tolist() == [6]
    assert len(result.token_times["time_s"]) == 3  # one row per chunk: three chunks of two tokens
    assert result.summary["replay"]["tokens_counted_from"] == {"token_ids": 0, "text_chunks": 0, "usage": 1}
    assert r.cached_tokens.tolist() == [16] and result.summary["replay"]["cached_tokens"] == 16
    body = engine.bodies[0]
    assert "return_token_ids" not in body
    ids = PromptMaker(build_workload(config.workload, RandomStreams(config.seed)), config.seed).token_ids(0)
    assert body["prompt"] == " ".join(WORDS[t % len(WORDS)] for t in ids) and len(body["prompt"].split()) == 40


def test_failures_are_recorded_with_their_reasons(tmp_path):
    rows = [(0, 30, 4, [1]), (0, 30, 7, [2]), (0, 30, 9, [3]), (0, 30, 11, [4]), (0, 30, 13, [5])]
    engine = FakeEngine(TTFT, TPOT, modes={7: "error", 9: "hang", 11: "short", 13: "bad_usage"})
    with serving(engine) as url:
        result = replay(load_config(mooncake(tmp_path, rows)), ReplayOptions(url, timeout_s=0.5))
    r = result.requests
    assert len(r) == 5  # none dropped
    reasons = dict(zip(r.output_tokens.tolist(), r.reject_reason.tolist()))
    assert reasons == {4: "", 7: "http 503: engine overloaded", 9: "timeout", 11: "short: 5 of 11 tokens",
                       13: "usage mismatch: 13 tokens streamed, usage says 14"}
    assert r.status.tolist() == [FINISHED, FAILED, FAILED, FAILED, FAILED]
    assert r.tokens_generated.tolist() == [4, 0, 0, 5, 13]
    assert np.isnan(r.finish_s[1:]).all() and not math.isnan(r.first_token_s[3])
    s = result.summary
    assert (s["num_finished"], s["num_failed"], s["num_requests"]) == (1, 4, 5)
    assert s["failed_by_reason"] == {reason: 1 for reason in sorted(reasons.values()) if reason}


def test_an_unreachable_endpoint_fails_each_request(tmp_path):
    config = load_config(mooncake(tmp_path, [(0, 30, 4, [1]), (100, 30, 5, [2])]))
    result = replay(config, ReplayOptions(f"http://127.0.0.1:{free_port()}", model="m", timeout_s=5))
    assert result.requests.status.tolist() == [FAILED, FAILED]
    assert all(reason.startswith("connection: ConnectError") for reason in result.requests.reject_reason), \
        result.requests.reject_reason
    assert result.metrics_before is None and result.summary["replay"]["metrics_files"] == []


def test_closed_loop_sends_each_next_request_after_the_previous_ends(tmp_path):
    scenario = tmp_path / "closed.yaml"
    scenario.write_text(yaml.safe_dump({"name": "closed", "seed": 1, "workload": {
        "kind": "closed_loop", "concurrency": 2, "num_requests": 6, "input_len": 32, "output_len": 4,
        "range_ratio": 1.0}}))
    engine = FakeEngine(TTFT, TPOT)
    with serving(engine) as url:
        result = replay(load_config(scenario), ReplayOptions(url))
    r = result.requests
    assert r.request_id.tolist() == list(range(6)) and (r.status == FINISHED).all()
    assert r.arrival_s[:2].tolist() == [0.0, 0.0]
    for k in range(2, 6):  # client k % 2: row k follows row k - 2, with no think time
        assert r.arrival_s[k] >= r.finish_s[k - 2]
        assert result.sent_s[k] >= r.arrival_s[k] - 1e-3
    assert engine.max_open == 2 and len(engine.bodies) == 6
    assert result.summary["replay"]["closed_loop"] is True
    assert result.summary["programs"]["count"] == 2 and result.summary["programs"]["completed"] == 2
    assert result.programs is not None and result.programs["calls"].tolist() == [3, 3]


def test_agent_programs_are_refused(tmp_path):
    scenario = tmp_path / "agent.yaml"
    scenario.write_text(yaml.safe_dump({"workload": {"kind": "agent", "num_programs": 2}}))
    from servesim.errors import ConfigError

    with pytest.raises(ConfigError, match="replay does not support agent programs"):
        replay(load_config(scenario), ReplayOptions("http://127.0.0.1:1", model="m"))


def test_prompts_are_deterministic_and_share_prefix_blocks():
    from servesim.workload.request import Workload

    w = Workload.from_arrays([0, 1, 2], [40, 40, 20], [1, 1, 1], prefix_block_ids=[(5, 6, 7), (5, 6, 8), ()],
                             prefix_block_size=16)
    a, b = PromptMaker(w, seed=3), PromptMaker(w, seed=3)
    assert a.token_ids(0) == b.token_ids(0) and a.token_ids(2) == b.token_ids(2)
    assert [len(a.token_ids(r)) for r in range(3)] == [40, 40, 20]
    assert a.token_ids(0)[:32] == a.token_ids(1)[:32] and a.token_ids(0)[32:] != a.token_ids(1)[32:]
    assert PromptMaker(w, seed=4).token_ids(0) != a.token_ids(0)
    assert a.text(2) == " ".join(WORDS[t % len(WORDS)] for t in a.token_ids(2))


def test_sse_decoder_and_chunks():
    from servesim.live.sse import SseDecoder, read_chunk

    d = SseDecoder()
    assert [d.line(x) for x in (": keep-alive", "data: {\"a\":", "data: 1}", "")] == [None, None, None, '{"a":\n1}']
    chunk = read_chunk('{"choices": [{"text": "", "token_ids": [1, 2, 3]}]}')
    assert (chunk.num_tokens, chunk.from_token_ids) == (3, True)
    assert read_chunk('{"choices": [{"text": "hi"}, {"text": ""}]}').num_tokens == 1
    assert read_chunk("[DONE]").done
    assert read_chunk('{"error": {"message": "boom"}}').error == "boom"
    assert read_chunk('{"choices": [], "usage": {"completion_tokens": 4}}').usage == {"completion_tokens": 4}


def test_cpu_shares_subtract_own_and_server_time():
    from servesim.live.cpu_share import CpuSample, shares

    first = CpuSample(0.0, total=1000, busy=300, own=50, server=100)
    last = CpuSample(1.0, total=1400, busy=600, own=90, server=260)
    assert shares(first, last) == {"busy_share": 0.75, "self_share": 0.1, "server_share": 0.4, "others_share": 0.25}
    no_server = shares(CpuSample(0, 1000, 300, 50, None), CpuSample(1, 1400, 600, 90, None))
    assert no_server["server_share"] is None and no_server["others_share"] == pytest.approx(0.65)
    assert shares(None, last)["others_share"] is None
