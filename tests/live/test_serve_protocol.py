"""``servesim serve``'s pieces without HTTP: request rules, prefix hashing, the clock, the engine on a
fake wall clock, metric buckets and the scenarios it refuses."""

from __future__ import annotations

import asyncio

import pytest

from servesim.api import simulate
from servesim.config import validate_config
from servesim.errors import ConfigError
from servesim.live.serve.engine import LiveEngine, Rejected, SimClock
from servesim.live.serve.metrics import token_buckets
from servesim.live.serve.protocol import (
    ApiError,
    count_text_tokens,
    parse_chat,
    parse_completion,
    prefix_block_ids,
)
from servesim.live.serve.scenario import build_serve_setup
from servesim.workload.request import Workload

SCENARIO = {"cluster": {"num_replicas": 1, "model": "llama-3-8b", "hardware": "h100"}}


# ---------------------------------------------------------------------- request rules


@pytest.mark.parametrize("text, tokens", [("", 1), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_text_counts_a_token_per_four_characters_at_least_one(text, tokens):
    assert count_text_tokens(text) == tokens
    assert parse_completion({"prompt": text}).num_prompt_tokens == tokens


def test_token_ids_count_exactly_and_a_batch_of_one_is_one_prompt():
    assert parse_completion({"prompt": [5, 6, 7]}).num_prompt_tokens == 3
    assert parse_completion({"prompt": [[5, 6, 7, 8]]}).prompt_token_ids == (5, 6, 7, 8)
    assert parse_completion({"prompt": ["abcdefgh"]}).num_prompt_tokens == 2


def test_chat_counts_each_messages_text_plus_four():
    messages = [{"role": "system", "content": "abcdefgh"},  # 2 + 4
                {"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "text", "text": "de"}]},  # 2 + 4
                {"role": "assistant", "content": None}]  # 0 + 4
    assert parse_chat({"messages": messages}).num_prompt_tokens == 16


def test_output_length_defaults():
    assert parse_completion({"prompt": "hi"}).output_tokens(8192) == 16
    assert parse_completion({"prompt": "hi", "max_tokens": 3}).output_tokens(8192) == 3
    chat = parse_chat({"messages": [{"role": "user", "content": "hi"}]})  # 5 tokens
    assert chat.output_tokens(8192) == 256
    assert chat.output_tokens(100) == 95  # what the context leaves
    both = parse_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9, "max_completion_tokens": 4})
    assert both.output_tokens(8192) == 4


def test_fields_that_change_nothing_are_accepted():
    req = parse_completion({"prompt": "hi", "temperature": 0.7, "top_p": 0.9, "stop": ["\n"], "ignore_eos": True,
                            "seed": 3, "logprobs": 2, "stream": True, "stream_options": {"include_usage": True},
                            "user": "alice", "priority": -1, "return_token_ids": True})
    assert (req.stream, req.include_usage, req.return_token_ids, req.session, req.priority) == (True, True, True,
                                                                                                 "alice", -1)


@pytest.mark.parametrize("body", [{"prompt": "hi", "echo": True}, {"prompt": "hi", "best_of": 3},
                                  {"prompt": "hi", "stream": "yes"}, {"prompt": "hi", "priority": 1.5},
                                  {"prompt": "hi", "priority": 10**30}, {"prompt": [2**40]},
                                  {"prompt": [1, True]}, {"prompt": 12}])
def test_unsupported_or_mistyped_fields_are_400(body):
    with pytest.raises(ApiError) as err:
        parse_completion(body)
    assert err.value.status == 400


def test_image_parts_are_400():
    with pytest.raises(ApiError):
        parse_chat({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})


# ---------------------------------------------------------------------- prefix blocks


def test_prefix_blocks_of_token_ids_chain_over_full_blocks():
    shared = list(range(32))
    a = prefix_block_ids(parse_completion({"prompt": shared + [100] * 16 + [1] * 5}), 16)
    b = prefix_block_ids(parse_completion({"prompt": shared + [200] * 16}), 16)
    assert len(a) == 3 and len(b) == 3  # full blocks only (53 tokens: 3)
    assert a[:2] == b[:2] and a[2] != b[2]
    assert all(0 <= h < 2**63 for h in a)
    # A block's id stands for its whole prefix: equal blocks after different ones differ.
    c = prefix_block_ids(parse_completion({"prompt": [9] * 16 + shared[16:32]}), 16)
    assert c[1] != a[1]
    assert prefix_block_ids(parse_completion({"prompt": shared}), 0) == ()


def test_prefix_blocks_of_text_share_a_shared_text_prefix():
    system = "s" * 64  # one block of 16 tokens (64 characters)
    a = prefix_block_ids(parse_completion({"prompt": system + "a" * 64}), 16)
    b = prefix_block_ids(parse_completion({"prompt": system + "b" * 64}), 16)
    assert a[0] == b[0] and a[1] != b[1]


# ---------------------------------------------------------------------- clock and engine


class FakeWall:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_clock_runs_time_scale_simulated_seconds_per_wall_second():
    wall = FakeWall()
    clock = SimClock(10.0, wall)
    clock.start()
    wall.t += 0.5
    assert clock.now_s() == pytest.approx(5.0)
    assert clock.wall_delay_s(6.0) == pytest.approx(0.1)
    assert clock.wall_delay_s(4.0) == 0.0
    with pytest.raises(ValueError):
        SimClock(0.0)


def test_the_engine_releases_each_token_only_when_the_clock_passes_it():
    """On a fake wall clock: nothing before the first token's time, then exactly the tokens due,
    at the times `servesim run` gives the same request."""
    config = validate_config(SCENARIO)
    expected = simulate(config, workload=Workload.from_arrays([0.0], [300], [5])).requests
    ttft, finish = float(expected.first_token_s[0]), float(expected.finish_s[0])
    wall = FakeWall()

    async def scenario():
        engine = LiveEngine(build_serve_setup(config, max_requests=10), time_scale=2.0, wall=wall)
        engine.start()
        wall.t += 1.0  # simulated 2.0 s
        live = engine.submit(300, 5)
        assert live.arrival_s == 2.0
        wall.t += (ttft - 1e-6) / 2.0
        engine.advance()
        assert live.num_released == 0
        wall.t += 2e-6 / 2.0
        engine.advance()
        assert live.num_released == 1 and live.first_token_s == pytest.approx(2.0 + ttft, abs=1e-12)
        wall.t += (finish - ttft) / 2.0 + 1e-6
        engine.advance()
        assert live.done and live.error is None and live.num_released == 5
        assert live.finish_s - live.arrival_s == pytest.approx(finish, abs=1e-9)
        await engine.stop()

    asyncio.run(scenario())


def test_the_engine_passes_on_the_simulations_rejections():
    # An L4 holds Llama-3-8B's KV for fewer tokens than the context allowed here.
    wall = FakeWall()
    config = validate_config({"cluster": {"model": "llama-3-8b", "hardware": "l4", "max_model_len": 200000}})

    async def scenario():
        setup = build_serve_setup(config, max_requests=10)
        kv = setup.sim.replicas[0].scheduler.kv
        holds = kv.num_blocks * kv.block_size
        assert holds < 200000
        engine = LiveEngine(setup, wall=wall)
        engine.start()
        with pytest.raises(Rejected) as err:
            engine.submit(holds + 1, 1)
        assert err.value.reason == "exceeds_kv_capacity"
        live = engine.submit(holds - 1, 1)  # the largest that fits is taken
        assert not live.done
        await engine.stop()
        assert live.done and live.error == "the server is shutting down"

    asyncio.run(scenario())


# ---------------------------------------------------------------------- metrics and scenarios


def test_token_buckets_are_vllms_one_two_five():
    assert token_buckets(100) == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
    assert token_buckets(8192)[-1] == 5000.0


@pytest.mark.parametrize("section, value, named", [
    ("cluster", {"disaggregation": {"prefill_replicas": 1}, "num_replicas": 2}, "cluster.disaggregation"),
    ("router", {"policy": "quality_threshold"}, "router.policy"),
])
def test_scenarios_serve_cannot_emulate_are_refused_in_one_line(section, value, named):
    raw = {**SCENARIO, section: {**SCENARIO.get(section, {}), **value}}
    with pytest.raises(ConfigError, match=named):
        build_serve_setup(validate_config(raw), max_requests=10)


def test_lora_adapters_have_the_ranks_servesim_run_draws():
    raw = {**SCENARIO, "seed": 4, "workload": {
        "kind": "synthetic", "num_requests": 5, "arrival": {"process": "constant", "rate_rps": 1.0},
        "prompt_tokens": {"dist": "fixed", "value": 10}, "output_tokens": {"dist": "fixed", "value": 2},
        "lora": {"num_adapters": 6, "ranks": [8, 16, 32, 64]}}}
    config = validate_config(raw)
    setup = build_serve_setup(config, max_requests=10)
    from servesim.core.rng import RandomStreams
    from servesim.workload.builder import build_workload

    assert list(setup.models) == ["llama-3-8b"] + [f"lora-{i}" for i in range(6)]
    ranks = build_workload(config.workload, RandomStreams(4)).adapter_ranks
    assert list(setup.sim.workload.adapter_ranks) == list(ranks)
