"""Running the dashboard with uvicorn: in the foreground until a stop signal (:func:`serve`), or in a thread.

Both bind the listening socket themselves, before uvicorn starts, so that a
port in use is an ordinary ``OSError`` for the caller (the CLI's one error
line) and port 0 gives a free port whose URL is known at once. At shutdown
the open event streams are ended first: a browser's stream never ends by
itself, and uvicorn would otherwise wait for it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from discovery.dashboard._app import end_streams

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_START_TIMEOUT = 30.0
_GRACE_SECONDS = 5


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to :func:`serve` and the event streams ended before shutdown."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=_GRACE_SECONDS,
        )
        super().__init__(config)
        self._app = app

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # serve() installs its own handlers, for SIGHUP too, and does not re-raise them afterwards.
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        end_streams(self._app)
        await super().shutdown(sockets)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``); names are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        OSError: the address cannot be resolved or bound (a port in use...).
    """
    family, kind, proto, _name, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = host.strip("[]")
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 8080, on_ready: Callable[[str], object] | None = None
) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT, SIGTERM or SIGHUP, then shut down cleanly and return.

    Args:
        app: the application (see :func:`create_app`).
        host: the address to listen on; the caller decides whether a non-loopback one is allowed.
        port: the port; 0 picks a free one.
        on_ready: called with the URL (``http://host:port/``) once the socket listens.

    Raises:
        OSError: the address cannot be bound.
    """
    sock = _listen(host, port)
    server = _Server(app)
    in_main_thread = threading.current_thread() is threading.main_thread()

    def stop(signum: int, frame: FrameType | None) -> None:
        server.handle_exit(signum, frame)

    previous = {signum: signal.signal(signum, stop) for signum in _STOP_SIGNALS} if in_main_thread else {}
    try:
        if on_ready is not None:
            on_ready(_url(sock, host))
        server.run(sockets=[sock])
    finally:
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def running(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a background thread for the block; yields its URL once it accepts requests.

    For tests and embedding: leaving the block ends the event streams, shuts
    the server down (the application's lifespan included) and joins the thread.

    Raises:
        OSError: the address cannot be bound.
        RuntimeError: the server did not start (its lifespan failed: see the log).
    """
    sock = _listen(host, port)
    server = _Server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="discovery-dashboard", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start; see the log")
            time.sleep(0.01)
        yield _url(sock, host)
    finally:
        server.should_exit = True
        thread.join(_GRACE_SECONDS + 5)
        sock.close()
