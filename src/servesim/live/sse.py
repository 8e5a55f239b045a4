"""Reading a streamed ``/v1/completions`` response: server-sent events and what each chunk says.

``SseDecoder`` turns the response's lines into event payloads (the ``data:`` lines of one event
joined by newlines, per the SSE specification; comments and other fields are ignored).
``read_chunk`` reads one payload of an OpenAI-compatible completion stream:

* ``[DONE]``: the end of the stream;
* ``{"error": ...}``: an error the server sent mid-stream;
* a chunk: its output tokens counted from each choice's ``token_ids`` when present (vLLM's
  ``return_token_ids``; a chunk may carry several tokens when the server coalesces them), else
  one per choice with non-empty ``text``; and its ``usage`` block when present (the last chunk,
  with ``stream_options.include_usage``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"


class SseDecoder:
    """Feed it the stream's lines one by one; it returns each event's data when the event ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def line(self, line: str) -> str | None:
        """One line (without its line break); the event's data when ``line`` ends an event."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """The data of an event left open (the stream ended without a blank line), else None."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass(frozen=True)
class Chunk:
    """What one event of a completion stream says.

    done: it was ``[DONE]``.
    error: the message of an error event, else None.
    num_tokens: output tokens it carries.
    from_token_ids: they were counted from ``token_ids`` (else from non-empty texts).
    usage: its ``usage`` block, else None.
    """

    done: bool = False
    error: str | None = None
    num_tokens: int = 0
    from_token_ids: bool = False
    usage: dict[str, Any] | None = None


def read_chunk(data: str) -> Chunk:
    """One event's data, read (see the module docstring); ``ValueError`` if it is not a JSON object."""
    if data.strip() == DONE:
        return Chunk(done=True)
    event = json.loads(data)
    if not isinstance(event, dict):
        raise ValueError(f"not a JSON object: {data[:80]!r}")
    if event.get("error") is not None:
        return Chunk(error=error_message(event))
    tokens, from_ids = 0, False
    for choice in event.get("choices") or ():
        ids = choice.get("token_ids") if isinstance(choice, dict) else None
        if isinstance(ids, list):
            tokens += len(ids)
            from_ids = True
        elif isinstance(choice, dict) and choice.get("text"):
            tokens += 1
    usage = event.get("usage")
    return Chunk(num_tokens=tokens, from_token_ids=from_ids, usage=usage if isinstance(usage, dict) else None)


def error_message(body: Any) -> str:
    """The message of an error body: OpenAI's ``{"error": {"message"}}``, ``{"message"}``,
    ``{"detail"}`` (FastAPI), else the text itself; one line, at most 200 characters."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            pass
    message = body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        message = next((v for v in (inner, body.get("message"), body.get("detail")) if v), body)
    text = " ".join(str(message).split())
    return text if len(text) <= 200 else text[:197] + "..."
