"""OpenAI response bodies and stream chunks, in vLLM's shape, with placeholder text.

Every generated token is the text ``PLACEHOLDER_TEXT`` (" tok"); its id is its position in the
output (0, 1, 2, ...), so a client can see that no token was lost, repeated or reordered.  With
``return_token_ids`` (vLLM's field) responses carry the output's ids (``token_ids``, per choice,
in every stream chunk) and the prompt's (``prompt_token_ids``: the ids sent, or 0 for each token
a text prompt counts).  Every request ends by length (``finish_reason: "length"``).

The finishing body or chunk carries a ``servesim`` object: the request's replica and its times in
simulated seconds since the server started (arrival, first token and finish as ``servesim run``
reports them, queueing time), for tests that compare a served request with a simulated one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from servesim.live.serve.engine import LiveRequest

PLACEHOLDER_TEXT = " tok"
FINISH_REASON = "length"


@dataclass(frozen=True)
class ResponseContext:
    """What every body and chunk of one response repeats."""

    id: str
    created: int  # Unix seconds
    model: str  # as asked
    kind: str  # "completion" or "chat"
    num_prompt_tokens: int
    max_tokens: int
    return_token_ids: bool = False
    prompt_token_ids: tuple[int, ...] | None = None  # None: a text prompt (placeholder ids)

    @property
    def object(self) -> str:
        return "text_completion" if self.kind == "completion" else "chat.completion"

    def prompt_ids(self) -> list[int]:
        return list(self.prompt_token_ids) if self.prompt_token_ids is not None else [0] * self.num_prompt_tokens

    def usage(self, num_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": self.num_prompt_tokens, "total_tokens": self.num_prompt_tokens + num_tokens,
                "completion_tokens": num_tokens}


def timings(live: LiveRequest) -> dict[str, Any]:
    """The request's replica and simulated times (s since the server started; null when unknown)."""
    times = {"arrival_s": live.arrival_s, "first_token_s": live.first_token_s, "finish_s": live.finish_s,
             "queue_s": live.queue_s}
    return {"replica": live.replica, **{k: None if math.isnan(v) else v for k, v in times.items()},
            "num_preemptions": live.num_preemptions}


def response_body(ctx: ResponseContext, live: LiveRequest) -> dict[str, Any]:
    """The whole answer of a served request (not streamed)."""
    n = live.num_released
    text = PLACEHOLDER_TEXT * n
    choice: dict[str, Any] = {"index": 0}
    if ctx.kind == "completion":
        choice.update(text=text, logprobs=None, finish_reason=FINISH_REASON, stop_reason=None, prompt_logprobs=None)
    else:
        choice.update(message={"role": "assistant", "content": text, "tool_calls": []}, logprobs=None,
                      finish_reason=FINISH_REASON, stop_reason=None)
    body = {"id": ctx.id, "object": ctx.object, "created": ctx.created, "model": ctx.model, "choices": [choice]}
    if ctx.return_token_ids:
        choice["token_ids"] = list(range(n))
        (choice if ctx.kind == "completion" else body)["prompt_token_ids"] = ctx.prompt_ids()
    body["usage"] = ctx.usage(n)
    body["servesim"] = timings(live)
    return body


def token_chunk(ctx: ResponseContext, position: int, live: LiveRequest) -> dict[str, Any]:
    """The stream chunk of output token ``position`` (the last carries the finish reason)."""
    last = position == ctx.max_tokens - 1
    choice: dict[str, Any] = {"index": 0}
    if ctx.kind == "completion":
        choice.update(text=PLACEHOLDER_TEXT, logprobs=None, finish_reason=FINISH_REASON if last else None,
                      stop_reason=None)
    else:
        delta = {"role": "assistant", "content": PLACEHOLDER_TEXT} if position == 0 else {"content": PLACEHOLDER_TEXT}
        choice.update(delta=delta, logprobs=None, finish_reason=FINISH_REASON if last else None)
    chunk = {"id": ctx.id, "object": _chunk_object(ctx), "created": ctx.created, "model": ctx.model,
             "choices": [choice]}
    if ctx.return_token_ids:
        choice["token_ids"] = [position]
        if position == 0:
            (choice if ctx.kind == "completion" else chunk)["prompt_token_ids"] = ctx.prompt_ids()
    if last:
        chunk["servesim"] = timings(live)
    return chunk


def usage_chunk(ctx: ResponseContext, num_tokens: int) -> dict[str, Any]:
    """The final chunk of ``stream_options.include_usage``: no choices, the usage."""
    return {"id": ctx.id, "object": _chunk_object(ctx), "created": ctx.created, "model": ctx.model, "choices": [],
            "usage": ctx.usage(num_tokens)}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: ...`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n"


def _chunk_object(ctx: ResponseContext) -> str:
    return "text_completion" if ctx.kind == "completion" else "chat.completion.chunk"
