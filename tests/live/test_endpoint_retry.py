"""A completion whose connection fails is sent again (it reached no server); other failures are not."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from servesim.live.endpoint import CONNECT_TRIES, Endpoint


class _Response:
    status_code = 200

    async def aiter_lines(self):
        for i in range(3):
            yield f'data: {{"choices": [{{"text": "", "token_ids": [{i}]}}]}}'
            yield ""
        yield "data: [DONE]"
        yield ""


class _Client:
    """Fails the first ``refusals`` connections with ``error``, then streams three tokens."""

    def __init__(self, refusals: int, error: type[Exception]) -> None:
        self.refusals, self.error, self.calls = refusals, error, 0

    @contextlib.asynccontextmanager
    async def stream(self, method, url, json):
        self.calls += 1
        if self.calls <= self.refusals:
            raise self.error("refused")
        yield _Response()


def _complete(client: _Client):
    endpoint = Endpoint("http://127.0.0.1:1")
    endpoint._client = client  # noqa: SLF001 - the test's stand-in for httpx.AsyncClient
    return asyncio.run(endpoint.complete("m", [1, 2], 3))


def test_a_refused_connection_is_tried_again():
    client = _Client(CONNECT_TRIES - 1, httpx.ConnectTimeout)
    done = _complete(client)
    assert done.error is None and len(done.token_s) == 3 and client.calls == CONNECT_TRIES
    client = _Client(1, httpx.ConnectError)
    assert _complete(client).error is None and client.calls == 2


def test_it_gives_up_after_its_tries_and_never_resends_after_connecting():
    client = _Client(CONNECT_TRIES, httpx.ConnectTimeout)
    done = _complete(client)
    assert done.error.startswith("ConnectTimeout") and client.calls == CONNECT_TRIES
    client = _Client(1, httpx.ReadTimeout)  # the server may have the request: no second send
    done = _complete(client)
    assert done.error.startswith("ReadTimeout") and client.calls == 1
