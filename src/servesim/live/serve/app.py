"""The FastAPI routes of ``servesim serve``: OpenAI's endpoints over a ``LiveEngine``.

``POST /v1/completions`` and ``POST /v1/chat/completions`` (streamed as server-sent events, or
whole), ``GET /v1/models``, ``GET /health`` (200; 503 once the engine has stopped) and
``GET /metrics`` (Prometheus text, ``servesim.live.serve.metrics``).

Answers other than 200 use OpenAI's error body (``{"error": {"message", "type", "param",
"code"}}``): 400 for a body that is not JSON or a bad field (``servesim.live.serve.protocol``)
and for a request the simulation rejects at arrival (too long for any replica); 404 for an
unknown model; 503 when the server takes no more requests (stopping, out of simulation rows, or
its simulation failed: a servesim bug, whose traceback is logged).
A request lost to a replica failure of the scenario gets 500, or, when streamed, an error event
(``data: {"error": ...}``, which OpenAI's clients raise) after the tokens it received.

Every handler is ``async`` and runs on the server's event loop, as the engine's driver does:
nothing here runs in a thread pool, so the simulation is only ever touched from one thread.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from servesim.live.serve.engine import LiveEngine, LiveRequest, Rejected, Unavailable
from servesim.live.serve.metrics import CONTENT_TYPE, ServeMetrics
from servesim.live.serve.protocol import (
    ApiError,
    GenerateRequest,
    check_length,
    parse_chat,
    parse_completion,
    prefix_block_ids,
)
from servesim.live.serve.responses import ResponseContext, response_body, sse, token_chunk, usage_chunk
from servesim.live.serve.scenario import ServeSetup


def create_app(setup: ServeSetup, time_scale: float = 1.0) -> FastAPI:
    """The app serving ``setup``'s simulation; its engine starts and stops with the app (lifespan)."""
    metrics = ServeMetrics(setup.base_model, setup.max_model_len, lambda: engine.replicas)
    engine = LiveEngine(setup, time_scale, observer=metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="servesim serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    app.state.metrics = metrics
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.get("/health")
    async def health() -> Response:
        if engine.stopped is not None:  # as vLLM's, when its engine died
            return JSONResponse(ApiError(503, engine.stopped).body(), status_code=503)
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": m.name, "object": "model", "created": created, "owned_by": "servesim", "root": m.parent or m.name,
             "parent": m.parent, "max_model_len": setup.max_model_len}
            for m in setup.models.values()
        ]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        engine.advance()  # gauges as of now
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _generate(engine, setup, parse_completion(await _json(request)))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _generate(engine, setup, parse_chat(await _json(request)))

    return app


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON: {err}") from None


async def _generate(engine: LiveEngine, setup: ServeSetup, req: GenerateRequest) -> Response:
    """Submit ``req`` to the engine; stream its tokens as they are released, or answer once all are."""
    model = setup.models.get(req.model or setup.base_model)
    if model is None:
        raise ApiError(404, f"The model `{req.model}` does not exist.", "model")
    max_tokens = req.output_tokens(setup.max_model_len)
    check_length(req, max_tokens, setup.max_model_len)
    prefix = prefix_block_ids(req, setup.prefix_block_tokens)
    try:
        live = engine.submit(req.num_prompt_tokens, max_tokens, adapter=model.adapter, priority=req.priority,
                             session=req.session, prefix=prefix)
    except Rejected as err:
        raise ApiError(400, f"the simulated engine rejected the request: {err.reason}") from None
    except Unavailable as err:
        raise ApiError(503, str(err)) from None
    prefix_id = "cmpl" if req.kind == "completion" else "chatcmpl"
    ctx = ResponseContext(f"{prefix_id}-servesim-{live.rid}", int(time.time()), model.name, req.kind,
                          req.num_prompt_tokens, max_tokens, req.return_token_ids, req.prompt_token_ids)
    if req.stream:
        return StreamingResponse(_events(ctx, live, req.include_usage), media_type="text/event-stream")
    while not live.done:
        await live.wait()
    if live.error is not None:
        raise ApiError(500, live.error)
    return JSONResponse(response_body(ctx, live))


async def _events(ctx: ResponseContext, live: LiveRequest, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: a chunk per token as it is released, the usage if asked, ``[DONE]``."""
    sent = 0
    while True:
        await live.wait()
        released = live.num_released
        if released > sent:
            yield "".join(sse(token_chunk(ctx, position, live)) for position in range(sent, released))
            sent = released
        if live.done:
            break
    if live.error is not None:
        yield sse(ApiError(500, live.error).body())
    elif include_usage:
        yield sse(usage_chunk(ctx, sent))
    yield sse("[DONE]")
