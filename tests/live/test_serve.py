"""``servesim serve`` end to end: a server in a thread, real HTTP clients (httpx, openai).

Scenarios are tiny (Llama-3-8B on H100, one or two replicas) and most run the simulated engine
faster than real time (``time_scale`` > 1), so the whole file takes seconds.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servesim.api import simulate
from servesim.config import validate_config
from servesim.live.serve.scenario import build_serve_setup
from servesim.live.serve.server import background
from servesim.workload.request import Workload

MODEL = "llama-3-8b"


def scenario(**sections) -> dict:
    """A small scenario: one Llama-3-8B replica on an H100 (sections override)."""
    raw = {
        "name": "serve-test",
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "constant", "rate_rps": 1.0},
                     "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 10}},
        "cluster": {"num_replicas": 1, "model": MODEL, "hardware": "h100"},
    }
    for name, section in sections.items():
        raw[name] = {**raw.get(name, {}), **section} if isinstance(section, dict) else section
    return raw


def setup_of(raw: dict):
    return build_serve_setup(validate_config(raw), max_requests=5000)


def metric_samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value} of a /metrics page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    """The sum of a sample over every series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def sse_events(lines) -> list:
    """The decoded ``data:`` payloads of an event stream ("[DONE]" kept as a string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# ---------------------------------------------------------------------- timing


def test_single_request_is_timed_as_servesim_run_simulates_it():
    """One request on an idle replica: its simulated TTFT and finish equal `servesim run`'s for the
    same request (to rounding), and the client sees them at those times / time_scale (within
    wall-clock jitter)."""
    raw = scenario()
    prompt, output, scale = 2000, 24, 1.0
    expected = simulate(validate_config(raw), workload=Workload.from_arrays([0.0], [prompt], [output])).requests
    ttft, e2e = float(expected.first_token_s[0]), float(expected.finish_s[0])
    assert 0.01 < ttft < e2e  # (hand check: a 2,000-token prefill, then 23 decode steps of ~7 ms)
    with background(setup_of(raw), time_scale=scale) as url:
        with httpx.Client(timeout=30) as client:
            client.get(f"{url}/health")  # connection warm
            body = {"model": MODEL, "prompt": list(range(1000, 1000 + prompt)), "max_tokens": output, "stream": True,
                    "return_token_ids": True}
            arrivals = []
            sent = time.monotonic()
            with client.stream("POST", f"{url}/v1/completions", json=body) as response:
                assert response.status_code == 200
                lines = []
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        arrivals.append(time.monotonic() - sent)
                    lines.append(line)
    events = sse_events(lines)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c["choices"][0]["token_ids"] for c in chunks] == [[k] for k in range(output)]
    timing = chunks[-1]["servesim"]
    assert timing["first_token_s"] - timing["arrival_s"] == pytest.approx(ttft, abs=1e-9)
    assert timing["finish_s"] - timing["arrival_s"] == pytest.approx(e2e, abs=1e-9)
    # The wall clock: each token no earlier than its simulated time (arrival is stamped after the
    # client sent), and late by no more than jitter.
    jitter = 0.05
    assert ttft / scale <= arrivals[0] + 0.002 <= ttft / scale + jitter
    assert e2e / scale <= arrivals[-1] + 0.002 <= e2e / scale + jitter
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert sum(gaps) / len(gaps) == pytest.approx((e2e - ttft) / (output - 1) / scale, abs=0.01)


# ---------------------------------------------------------------------- the OpenAI client


def test_openai_client_completions_and_chat_streamed_and_not():
    raw = scenario(cluster={"num_replicas": 2})
    with background(setup_of(raw), time_scale=20.0) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == [MODEL]

        done = client.completions.create(model=MODEL, prompt="Say hello in five words.", max_tokens=5)
        assert done.choices[0].text == " tok" * 5 and done.choices[0].finish_reason == "length"
        assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (6, 5)  # 24 characters: 6 tokens

        default = client.completions.create(model=MODEL, prompt=[1, 2, 3])
        assert default.usage.completion_tokens == 16 and default.usage.prompt_tokens == 3  # vLLM's default

        pieces = list(client.completions.create(model=MODEL, prompt="hi", max_tokens=4, stream=True,
                                                stream_options={"include_usage": True}))
        assert "".join(p.choices[0].text for p in pieces if p.choices) == " tok" * 4
        assert pieces[-1].usage.completion_tokens == 4 and not pieces[-1].choices

        messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there!"}]
        chat = client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=3)
        assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content == " tok" * 3
        # 14 and 12 characters: 4 + 3 tokens each, plus 4 per message for the template.
        assert chat.usage.prompt_tokens == (4 + 4) + (4 + 3)

        stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True,
                                                stream_options={"include_usage": True})
        parts = list(stream)
        assert parts[0].choices[0].delta.role == "assistant"
        assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == " tok" * 6
        assert [p.choices[0].finish_reason for p in parts if p.choices][-1] == "length"
        assert parts[-1].usage.completion_tokens == 6


# ---------------------------------------------------------------------- load


def test_200_concurrent_streaming_clients_each_get_every_token():
    raw = scenario(cluster={"num_replicas": 2})
    n = 200

    async def one(client: httpx.AsyncClient, url: str, i: int) -> tuple[int, list, dict | None]:
        body = {"model": MODEL, "prompt": [7] * (20 + i % 50), "max_tokens": 4 + i % 13, "stream": True,
                "return_token_ids": True, "stream_options": {"include_usage": True}}
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            lines = [line async for line in response.aiter_lines()]
        return response.status_code, sse_events(lines), body

    async def all_of(url: str):
        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, url, i) for i in range(n)))

    setup = setup_of(raw)
    with background(setup, time_scale=20.0) as url:
        results = asyncio.run(all_of(url))
        page = httpx.get(f"{url}/metrics").text
    for status, events, body in results:
        assert status == 200
        assert events[-1] == "[DONE]"
        tokens = [c["choices"][0]["token_ids"][0] for c in events[:-1] if c.get("choices")]
        assert tokens == list(range(body["max_tokens"]))  # none lost, repeated or reordered
        assert events[-2]["usage"]["completion_tokens"] == body["max_tokens"]
    samples = metric_samples(page)
    assert total(samples, "vllm:request_success_total", finished_reason="length") == n
    assert total(samples, "vllm:generation_tokens_total") == sum(b["max_tokens"] for _, _, b in results)
    used = {ls for (name, ls), _ in samples.items() if name == "vllm:generation_tokens_total"}
    assert {dict(ls)["engine"] for ls in used} == {"0", "1"}  # the router spread them over both replicas


# ---------------------------------------------------------------------- metrics


def test_metrics_count_the_requests_served_and_gauges_read_the_replicas():
    # Two seats per replica: of three long requests, two run and one waits.
    raw = scenario(scheduler={"max_num_seqs": 2})
    setup = setup_of(raw)
    with background(setup, time_scale=5.0) as url:
        with httpx.Client(timeout=30) as client:
            for prompt, max_tokens in [(10, 3), (40, 7), (333, 12)]:
                r = client.post(f"{url}/v1/completions", json={"prompt": [5] * prompt, "max_tokens": max_tokens})
                assert r.status_code == 200
            idle = metric_samples(client.get(f"{url}/metrics").text)
            busy = metric_samples(asyncio.run(_two_running_one_waiting(url)))
    labels = {"model_name": MODEL, "engine": "0"}
    assert total(idle, "vllm:request_success_total", finished_reason="length", **labels) == 3
    assert total(idle, "vllm:prompt_tokens_total", **labels) == 10 + 40 + 333
    assert total(idle, "vllm:generation_tokens_total", **labels) == 3 + 7 + 12
    assert total(idle, "vllm:time_to_first_token_seconds_count", **labels) == 3
    assert total(idle, "vllm:e2e_request_latency_seconds_count", **labels) == 3
    assert total(idle, "vllm:request_queue_time_seconds_count", **labels) == 3
    assert total(idle, "vllm:inter_token_latency_seconds_count", **labels) == 2 + 6 + 11
    # Per request (last - first token) / (tokens - 1): each at most its share of the gaps' sum
    # and at least that share over its 2, 6 or 11 gaps.
    assert total(idle, "vllm:request_time_per_output_token_seconds_count", **labels) == 3
    gaps = total(idle, "vllm:inter_token_latency_seconds_sum", **labels)
    assert gaps / 11 <= total(idle, "vllm:request_time_per_output_token_seconds_sum", **labels) <= gaps / 2
    assert total(idle, "vllm:num_preemptions_total", **labels) == 0
    assert total(idle, "vllm:num_requests_running", **labels) == 0
    assert total(idle, "vllm:kv_cache_usage_perc", **labels) == 0.0
    assert total(busy, "vllm:num_requests_running", **labels) == 2
    assert total(busy, "vllm:num_requests_waiting", **labels) == 1
    assert 0.0 < total(busy, "vllm:kv_cache_usage_perc", **labels) < 1.0


async def _two_running_one_waiting(url: str) -> str:
    """Open three long streams on a replica with two seats; the /metrics page once two stream."""
    body = {"prompt": [9] * 50, "max_tokens": 2000, "stream": True}
    async with httpx.AsyncClient(timeout=30) as client:
        first_chunks = []

        async def stream_one():
            async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        first_chunks.append(line)
                        return

        tasks = [asyncio.create_task(stream_one()) for _ in range(3)]
        while len(first_chunks) < 2:
            await asyncio.sleep(0.005)
        page = (await client.get(f"{url}/metrics")).text
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return page


# ---------------------------------------------------------------------- malformed requests


@pytest.fixture(scope="module")
def small_context_client():
    with background(setup_of(scenario(cluster={"max_model_len": 1024})), time_scale=50.0) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/completions", b"{not json", 400, None),
    ("/v1/completions", b"[1, 2]", 400, None),
    ("/v1/completions", {"max_tokens": 5}, 400, "prompt"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": [1] * 1000, "max_tokens": 100}, 400, "max_tokens"),  # 1,100 > 1,024
    ("/v1/completions", {"prompt": "x" * 5000}, 400, "max_tokens"),  # a 1,250-token text prompt
    ("/v1/completions", {"prompt": []}, 400, "prompt"),
    ("/v1/completions", {"prompt": [1, -2]}, 400, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt"),
    ("/v1/completions", {"prompt": "hi", "n": 2}, 400, "n"),
    ("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("/v1/completions", {"prompt": "hi", "model": "gpt-17"}, 404, "model"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"content": "no role"}]}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": -5}, 400,
     "max_completion_tokens"),
    ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
])
def test_malformed_requests_get_the_status_an_engine_sends(small_context_client, path, body, status, param):
    if isinstance(body, bytes):
        r = small_context_client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = small_context_client.post(path, json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["param"] == param and error["message"]
    assert error["type"] == {400: "BadRequestError", 404: "NotFoundError"}[status]


def test_a_request_at_the_context_limit_is_served(small_context_client):
    r = small_context_client.post("/v1/completions", json={"prompt": [1] * 1000, "max_tokens": 24})
    assert r.status_code == 200 and r.json()["usage"] == {"prompt_tokens": 1000, "completion_tokens": 24,
                                                           "total_tokens": 1024}


# ---------------------------------------------------------------------- LoRA adapters


def test_lora_adapters_are_listed_and_served():
    raw = scenario(workload={"lora": {"num_adapters": 3, "ranks": [16]}}, cluster={"lora": {"memory": "unified"}})
    setup = setup_of(raw)
    with background(setup, time_scale=50.0) as url, httpx.Client(base_url=url, timeout=30) as client:
        listed = client.get("/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in listed] == [(MODEL, None), ("lora-0", MODEL), ("lora-1", MODEL),
                                                             ("lora-2", MODEL)]
        r = client.post("/v1/completions", json={"model": "lora-2", "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 200 and r.json()["model"] == "lora-2"
        replica = setup.sim.replicas[0]
        assert replica.has_adapter(2) and not replica.has_adapter(1)  # the simulated engine loaded it
        assert client.post("/v1/completions", json={"model": "lora-3", "prompt": "x"}).status_code == 404


# ---------------------------------------------------------------------- failures


def test_a_replica_failure_turns_its_in_flight_requests_into_errors():
    # Replica 0 fails at 20 s (simulated), noticed 0.5 s later; its requests are not retried.
    failures = {"gpu_failures_per_hour": 0.0, "node_failures_per_hour": 0.0, "scripted": [{"at_s": 20.0, "replica": 0}],
                "detection_s": 0.5, "recovery": "restart", "restart_s": 1.0, "in_flight": "fail"}
    raw = scenario(failures=failures)
    scale = 20.0
    body = {"model": MODEL, "prompt": [3] * 64, "max_tokens": 4000}  # ~30 s of decoding: still running at 20 s

    async def clients(url: str):
        async with httpx.AsyncClient(timeout=30) as client:
            async def streamed():
                async with client.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}) as r:
                    return r.status_code, sse_events([line async for line in r.aiter_lines()])

            async def whole():
                r = await client.post(f"{url}/v1/completions", json=body)
                return r.status_code, r.json()

            results = await asyncio.gather(streamed(), streamed(), whole())
            page = (await client.get(f"{url}/metrics")).text
            return results, page

    with background(setup_of(raw), time_scale=scale) as url:
        started = time.monotonic()
        (s1, s2, (status, answer)), page = asyncio.run(clients(url))
        elapsed = time.monotonic() - started
    assert elapsed < 20.5 / scale + 1.0  # they ended at the failure's detection, not after 4,000 tokens
    for code, events in (s1, s2):
        assert code == 200  # the stream had started; the error comes as an event, after some tokens
        assert events[-1] == "[DONE]" and "error" in events[-2]
        assert "replica 0 failed" in events[-2]["error"]["message"]
        tokens = [c for c in events[:-2] if c.get("choices")]
        assert 0 < len(tokens) < 4000
    assert status == 500 and "replica 0 failed" in answer["error"]["message"]
    samples = metric_samples(page)
    assert total(samples, "vllm:request_success_total", finished_reason="abort") == 3
    assert total(samples, "vllm:request_success_total", finished_reason="length") == 0


def test_a_simulation_error_ends_every_request_and_the_health_check_says_so(caplog):
    """A bug inside the simulation (here an event that raises) must not leave clients hanging."""
    setup = setup_of(scenario())

    def boom(_now, _payload):
        raise RuntimeError("boom")

    setup.sim.loop.schedule(10.0, 0, boom)  # 10 simulated seconds after the start: 0.5 s at scale 20
    with background(setup, time_scale=20.0) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        r = client.post("/v1/completions", json={"prompt": [1] * 10, "max_tokens": 8000 - 10})  # ~60 s of decoding
        assert r.status_code == 500 and "the simulation failed (RuntimeError: boom)" in r.json()["error"]["message"]
        health = client.get("/health")
        assert health.status_code == 503 and "boom" in health.json()["error"]["message"]
        assert client.post("/v1/completions", json={"prompt": "hi"}).status_code == 503
    assert "servesim serve: the simulation failed" in caplog.text


def test_a_retried_request_pauses_and_then_gets_every_token():
    # Two replicas; replica 0 fails at 8 s and its request is retried on replica 1 once noticed (4 s later).
    detection = 4.0
    failures = {"gpu_failures_per_hour": 0.0, "node_failures_per_hour": 0.0, "scripted": [{"at_s": 8.0, "replica": 0}],
                "detection_s": detection, "recovery": "restart", "restart_s": 5.0, "in_flight": "retry",
                "max_retries": 1}
    raw = scenario(cluster={"num_replicas": 2}, failures=failures)
    scale = 20.0
    body = {"model": MODEL, "prompt": [3] * 64, "max_tokens": 1500, "stream": True, "return_token_ids": True}

    async def clients(url: str):
        async with httpx.AsyncClient(timeout=30) as client:
            async def streamed():
                stamps, lines = [], []
                async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            stamps.append(time.monotonic())
                        lines.append(line)
                return sse_events(lines), stamps

            return await asyncio.gather(streamed(), streamed())

    with background(setup_of(raw), time_scale=scale) as url:
        results = asyncio.run(clients(url))
    timings = []
    for events, stamps in results:
        assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
        assert [c["choices"][0]["token_ids"][0] for c in events[:-1]] == list(range(1500))  # none lost or repeated
        timing = events[-2]["servesim"]
        timings.append((timing["finish_s"] - timing["arrival_s"], timing["replica"],
                        max(b - a for a, b in zip(stamps, stamps[1:]))))
    (fast, fast_replica, _), (slow, slow_replica, slow_gap) = sorted(timings)
    # Both end on replica 1: one ran there all along, the other moved there after the failure,
    # having waited for the detection (simulated) and paused about that long for its client (wall:
    # 0.2 s, against 0.35 ms between tokens; half of it leaves room for a busy machine's jitter).
    assert fast_replica == slow_replica == 1
    assert slow > fast + detection
    assert slow_gap >= detection / scale / 2
