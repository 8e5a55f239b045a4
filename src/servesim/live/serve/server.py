"""uvicorn around the app: in the foreground (``servesim serve``) or a background thread (tests).

``listen`` binds the socket first, so that a port in use is a one-line ``ConfigError`` before
anything starts; uvicorn then serves on that socket.  The app's engine starts with the server
and stops with it: on Ctrl-C (SIGINT) or SIGTERM every request in flight ends at once with an
error ("the server is shutting down": an error event, or a 500), and connections get
``GRACEFUL_S`` seconds to close.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from servesim.errors import ConfigError
from servesim.live.serve.scenario import ServeSetup

GRACEFUL_S = 2
BACKLOG = 2048  # uvicorn's default


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: any free port); ``ConfigError`` if it cannot."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port = {port}: must be 0..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # clients may connect as soon as the URL is printed; uvicorn accepts them
    except OSError as err:
        sock.close()
        why = err.strerror or str(err)
        raise ConfigError(f"cannot listen on {host}:{port}: {why}; pick another --port or --host") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, which ends the engine's requests as it starts shutting down."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Clients hear why at once (an error event, a 500), rather than their connection being cut
        # after the grace period; the engine itself stops with the app's lifespan.
        self.config.app.state.engine.halt("the server is shutting down")
        await super().shutdown(sockets)


def _server(setup: ServeSetup, time_scale: float, access_log: bool) -> _Server:
    from servesim.live.serve.app import create_app

    config = uvicorn.Config(create_app(setup, time_scale), log_level="warning", access_log=access_log,
                            timeout_graceful_shutdown=GRACEFUL_S, lifespan="on")
    return _Server(config)


def serve_forever(setup: ServeSetup, sock: socket.socket, time_scale: float = 1.0, access_log: bool = False) -> None:
    """Serve on ``sock`` until Ctrl-C or SIGTERM (then return normally)."""
    server = _server(setup, time_scale, access_log)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        pass
    finally:
        sock.close()


@contextmanager
def background(setup: ServeSetup, *, host: str = "127.0.0.1", port: int = 0, time_scale: float = 1.0,
               start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``setup`` from a thread for the ``with`` block; yields the base URL (``http://host:port``,
    append ``/v1`` for OpenAI clients).  The server stops when the block ends."""
    sock = listen(host, port)
    server = _server(setup, time_scale, access_log=False)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="servesim-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5.0)
            sock.close()
            raise RuntimeError("servesim serve did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(GRACEFUL_S + 10.0)
        sock.close()
