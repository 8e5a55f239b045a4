"""OpenAI request bodies checked and reduced to what the simulator needs.

``parse_completion`` and ``parse_chat`` take a decoded JSON body and return a
``GenerateRequest`` or raise ``ApiError`` with the status an engine would send (400 for a bad
field, 404 for an unknown model, in OpenAI's error shape).  The rules:

* Prompt length.  A prompt of token ids (``"prompt": [1, 2, 3]``, as vLLM takes it) counts
  exactly.  Text counts ``ceil(characters / 4)`` tokens, at least 1 (``TEXT_CHARS_PER_TOKEN``);
  a chat counts each message's text that way plus ``MESSAGE_TOKENS`` (4) for the chat template's
  framing.  Only text content is counted: other parts (images, audio) are refused.
* Output length.  Generation never stops early (``ignore_eos`` is accepted and always in
  effect): a request gets exactly ``max_tokens`` tokens; completions default to 16 (vLLM's
  default), chats take ``max_completion_tokens`` or ``max_tokens`` and default to
  ``DEFAULT_CHAT_MAX_TOKENS`` (256), at most what the context leaves.
* Length limits.  Prompt plus output longer than ``max_model_len``: 400, as vLLM answers.
* One sequence per request: ``n`` > 1, ``best_of`` > 1, several prompts at once and ``echo`` are
  refused (400).  Sampling fields (temperature, top_p, stop, seed, logprobs, ...) are accepted and
  have no effect: the answer is placeholder text.
* ``user`` is the request's session (what ``router.policy: session_affinity`` reads) and
  ``priority`` its priority (smaller is more urgent, as in vLLM).

``prefix_block_ids`` hashes a prompt into chained block ids for prefix caching: equal leading
blocks (of token ids, or of text) give equal ids.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from dataclasses import dataclass
from typing import Any

TEXT_CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4
DEFAULT_COMPLETION_MAX_TOKENS = 16
DEFAULT_CHAT_MAX_TOKENS = 256
_MAX_TOKEN_ID = 2**31 - 1  # token ids and priorities are C longs in the compiled scheduler


class ApiError(Exception):
    """An answer other than 200: ``status``, and OpenAI's error body (see ``body``)."""

    TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError", 503: "ServiceUnavailableError"}

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}`` as vLLM's OpenAI server sends it."""
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "APIError"),
                          "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class GenerateRequest:
    """What the simulator and the response need of one completion or chat request."""

    kind: str  # "completion" or "chat"
    model: str | None  # as asked (None: the base model)
    num_prompt_tokens: int
    prompt_token_ids: tuple[int, ...] | None  # the prompt's ids when it came as ids
    prompt_text: str  # the text counted (the chat rendered as "role: content" lines), '' for ids
    max_tokens: int | None  # None: the endpoint's default (``output_tokens``)
    stream: bool = False
    include_usage: bool = False
    return_token_ids: bool = False
    priority: int = 0
    session: str | None = None

    def output_tokens(self, max_model_len: int) -> int:
        """Tokens to generate: ``max_tokens``, or the endpoint's default (a chat's at most what the
        context leaves, but at least 1, so that an overlong prompt is refused by ``check_length``)."""
        if self.max_tokens is not None:
            return self.max_tokens
        if self.kind == "completion":
            return DEFAULT_COMPLETION_MAX_TOKENS
        return max(1, min(DEFAULT_CHAT_MAX_TOKENS, max_model_len - self.num_prompt_tokens))


def parse_completion(body: Any) -> GenerateRequest:
    """A ``/v1/completions`` body (``ApiError`` 400 when malformed)."""
    body = _object(body)
    if "prompt" not in body:
        raise ApiError(400, "'prompt' is required", "prompt")
    if body.get("echo"):
        raise ApiError(400, "servesim serve does not emulate 'echo'", "echo")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids, text, count = None, prompt, count_text_tokens(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        raise ApiError(400, f"servesim serve takes one prompt per request, not a batch of {len(prompt)}", "prompt")
    elif isinstance(prompt, list):
        ids = _token_ids(prompt)
        text, count = "", len(ids)
    else:
        raise ApiError(400, "'prompt' must be a string or a list of token ids", "prompt")
    return GenerateRequest("completion", _model(body), count, ids, text, _max_tokens(body, "max_tokens"),
                           **_common(body))


def parse_chat(body: Any) -> GenerateRequest:
    """A ``/v1/chat/completions`` body (``ApiError`` 400 when malformed)."""
    body = _object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of messages", "messages")
    lines, count = [], 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role' string", "messages")
        text = _message_text(message.get("content"), i)
        lines.append(f"{message['role']}: {text}")
        count += MESSAGE_TOKENS + math.ceil(len(text) / TEXT_CHARS_PER_TOKEN)
    limit = _max_tokens(body, "max_completion_tokens")
    if limit is None:
        limit = _max_tokens(body, "max_tokens")
    return GenerateRequest("chat", _model(body), count, None, "\n".join(lines), limit, **_common(body))


def check_length(request: GenerateRequest, max_tokens: int, max_model_len: int) -> None:
    """400 when the prompt and ``max_tokens`` output tokens exceed the context (vLLM's message)."""
    total = request.num_prompt_tokens + max_tokens
    if total > max_model_len:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens. However, you requested "
                            f"{total} tokens ({request.num_prompt_tokens} in the messages, {max_tokens} in the "
                            "completion). Please reduce the length of the messages or completion.", "max_tokens")


def count_text_tokens(text: str) -> int:
    """Tokens a text counts: ``ceil(len / TEXT_CHARS_PER_TOKEN)``, at least 1."""
    return max(1, math.ceil(len(text) / TEXT_CHARS_PER_TOKEN))


def prefix_block_ids(request: GenerateRequest, block_tokens: int) -> tuple[int, ...]:
    """Chained ids of the prompt's full blocks of ``block_tokens`` tokens (``block_tokens *
    TEXT_CHARS_PER_TOKEN`` characters of text): id ``k`` stands for blocks 0..k, non-negative."""
    if block_tokens <= 0:
        return ()
    num_blocks = request.num_prompt_tokens // block_tokens
    if request.prompt_token_ids is not None:
        data, step = array("q", request.prompt_token_ids).tobytes(), block_tokens * 8
    else:
        data, step = request.prompt_text.encode(), block_tokens * TEXT_CHARS_PER_TOKEN
        num_blocks = min(num_blocks, len(request.prompt_text) // step)
    ids, digest = [], b""
    for k in range(num_blocks):
        digest = hashlib.blake2b(digest + data[k * step:(k + 1) * step], digest_size=8).digest()
        ids.append(int.from_bytes(digest, "little") >> 1)
    return tuple(ids)


# ---------------------------------------------------------------------- fields


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _model(body: dict) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", "model")
    return model


def _token_ids(prompt: list) -> tuple[int, ...]:
    if not prompt:
        raise ApiError(400, "The prompt cannot be empty", "prompt")
    for t in prompt:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= _MAX_TOKEN_ID:
            raise ApiError(400, f"token id {t!r} is out of vocabulary: token ids are integers from 0", "prompt")
    return tuple(prompt)


def _message_text(content: Any, i: int) -> str:
    """The text of a message's content: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{i}].content: servesim serve counts text parts only "
                                    "({'type': 'text', 'text': ...})", "messages")
            texts.append(part["text"])
        return "".join(texts)
    raise ApiError(400, f"messages[{i}].content must be a string or a list of content parts", "messages")


def _max_tokens(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be an integer", name)
    if value < 1:
        raise ApiError(400, f"{name} must be at least 1, got {value}.", name)
    return value


def _common(body: dict) -> dict[str, Any]:
    """The fields both endpoints share: n, streaming, token ids, priority, session."""
    for name in ("n", "best_of"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ApiError(400, f"'{name}' must be a positive integer", name)
        if value is not None and value > 1:
            raise ApiError(400, f"servesim serve generates one sequence per request ({name} = {value})", name)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise ApiError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
        if not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object", "stream_options")
    include_usage = _flag(options or {}, "include_usage")
    _flag(body, "ignore_eos")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > _MAX_TOKEN_ID:
        raise ApiError(400, "'priority' must be an integer of at most 2**31 - 1 in size", "priority")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, "'user' must be a string", "user")
    return {"stream": stream, "include_usage": include_usage, "return_token_ids": _flag(body, "return_token_ids"),
            "priority": priority, "session": user}


def _flag(body: dict, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false", name)
    return value
