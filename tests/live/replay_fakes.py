"""A fake OpenAI-compatible streaming server with known timings, for the replay tests.

``FakeEngine`` answers ``GET /v1/models``, ``GET /metrics`` and a streamed ``POST
/v1/completions``: the first token ``ttft_s`` after the request arrives, token ``k`` at ``ttft_s +
k x tpot_s`` (absolute deadlines, so no drift), ``tokens_per_chunk`` tokens to a chunk (a chunk
leaves when its last token is due), each chunk carrying ``token_ids`` (or only text when
``token_ids`` is off), then a usage chunk and ``[DONE]``.  ``modes`` picks a misbehaviour by the
request's ``max_tokens``: ``error`` (503 with an OpenAI error body), ``hang`` (sleeps, sends
nothing), ``short`` (half the tokens), ``bad_usage`` (usage claims one token more).  It records
every request body, its arrival (``time.perf_counter()``) and the most requests open at once.

``serving(engine)`` runs it with uvicorn in a thread on a free port and yields its base URL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class FakeEngine:
    def __init__(self, ttft_s: float = 0.02, tpot_s: float = 0.005, tokens_per_chunk: int = 1,
                 token_ids: bool = True, modes: dict[int, str] | None = None, cached_tokens: int = 0,
                 model: str = "fake-model", metrics: bool = True) -> None:
        self.ttft_s, self.tpot_s, self.tokens_per_chunk = ttft_s, tpot_s, tokens_per_chunk
        self.token_ids, self.modes, self.cached_tokens = token_ids, dict(modes or {}), cached_tokens
        self.model, self.metrics = model, metrics
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.open = 0
        self.max_open = 0
        self.num_metrics_calls = 0

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
        from starlette.routing import Route

        async def models(request):
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        async def metrics(request):
            if not self.metrics:
                return PlainTextResponse("not found", status_code=404)
            self.num_metrics_calls += 1
            return PlainTextResponse(f"# TYPE fake_requests_total counter\nfake_requests_total {len(self.bodies)}\n")

        async def completions(request):
            arrived = time.perf_counter()
            body = await request.json()
            self.bodies.append(body)
            self.arrivals.append(arrived)
            mode = self.modes.get(body["max_tokens"], "ok")
            if mode == "error":
                return JSONResponse({"error": {"message": "engine overloaded", "type": "ServiceUnavailable",
                                               "code": 503}}, status_code=503)
            return StreamingResponse(self._stream(body, mode, arrived), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/models", models), Route("/metrics", metrics),
                                 Route("/v1/completions", completions, methods=["POST"])])

    async def _stream(self, body: dict, mode: str, arrived: float):
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            if mode == "hang":
                await asyncio.sleep(30)
                return
            wanted = body["max_tokens"]
            sent = wanted // 2 if mode == "short" else wanted
            for first in range(0, sent, self.tokens_per_chunk):
                last = min(first + self.tokens_per_chunk, sent) - 1
                await asyncio.sleep(max(0.0, arrived + self.ttft_s + last * self.tpot_s - time.perf_counter()))
                choice = {"index": 0, "text": "ab", "finish_reason": "length" if last == sent - 1 else None}
                if self.token_ids:
                    choice["token_ids"] = [100 + k for k in range(first, last + 1)]
                yield _event({"id": "cmpl-1", "object": "text_completion", "model": self.model, "choices": [choice]})
            prompt = body["prompt"]
            usage = {"prompt_tokens": len(prompt) if isinstance(prompt, list) else len(prompt.split()),
                     "completion_tokens": sent + (1 if mode == "bad_usage" else 0),
                     "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            yield _event({"id": "cmpl-1", "object": "text_completion", "model": self.model, "choices": [],
                          "usage": usage})
            yield "data: [DONE]\n\n"
        finally:
            self.open -= 1


def _event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


@contextmanager
def serving(engine: FakeEngine) -> Iterator[str]:
    """Run ``engine`` on a free local port for the ``with`` block; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(engine.app(), log_level="error", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake engine did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def free_port() -> int:
    """A local port nothing listens on (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
