"""A TCP proxy on loopback between a client and its servers, for cutting one client off while the others go on.

A fault that only one client suffers — its connection cut, the network
between it and the servers gone for a while — cannot be played on the
server: everyone would suffer it. :class:`LoopbackProxy` forwards one
server's port through a port of its own on 127.0.0.1; :func:`proxied` puts a
proxy in front of every host of a registry URL and gives the URL to connect
through. :meth:`LoopbackProxy.blocked` cuts every connection and refuses new
ones until the block ends: to the client behind it, the servers are gone; to
every other client, nothing happened. :meth:`LoopbackProxy.throttled` paces
what the servers send to the client at a given rate: a slow link, on which
replies queue behind everything sent before them, however fast the client
reads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

__all__ = ["LoopbackProxy", "blocked", "proxied"]

_CHUNK = 65536
_CONNECT_SECONDS = 5.0
_PACE_SECONDS = 0.02
"""A throttled link forwards slices of this many seconds' worth of bytes, then waits out their time."""


class LoopbackProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; a context manager that closes it.

    Args:
        upstream: the server's ``(host, port)``.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._blocked = False
        self._closed = False
        self._bytes_per_second: float | None = None
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, for a URL."""
        return f"127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def blocked(self) -> Iterator[None]:
        """Cut every connection and refuse new ones until the block ends."""
        with self._lock:
            self._blocked = True
        self.cut()
        try:
            yield
        finally:
            with self._lock:
                self._blocked = False

    @contextlib.contextmanager
    def throttled(self, bytes_per_second: float) -> Iterator[None]:
        """Pace what the server sends to the client at ``bytes_per_second`` until the block ends.

        The client's requests pass at full speed; the server's replies and
        notifications queue in the order it sent them, as on a slow link.

        Raises:
            ValueError: the rate is not positive.
        """
        if not bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be positive, not {bytes_per_second!r}")
        with self._lock:
            self._bytes_per_second = float(bytes_per_second)
        try:
            yield
        finally:
            with self._lock:
                self._bytes_per_second = None

    def cut(self) -> None:
        """Close every connection through the proxy, both ways, at once."""
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        """Stop accepting and cut every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _shut(self._listener)
        self.cut()
        self._acceptor.join(timeout=5)

    def __enter__(self) -> LoopbackProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                refuse = self._blocked or self._closed
            if refuse:
                _shut(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=_CONNECT_SECONDS)
            except OSError:
                _shut(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, sink, paced in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, paced), name=f"proxy-{self.port}", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, paced: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if paced:
                    self._send_paced(sink, memoryview(data))
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _shut(source)
            _shut(sink)

    def _send_paced(self, sink: socket.socket, data: memoryview) -> None:
        """Send ``data``, at the throttled rate while a throttle lasts."""
        while data:
            rate = self._bytes_per_second
            if rate is None:
                sink.sendall(data)
                return
            piece = data[: max(1, int(rate * _PACE_SECONDS))]
            sink.sendall(piece)
            data = data[len(piece) :]
            time.sleep(len(piece) / rate)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def proxied(url: str) -> Iterator[tuple[str, list[LoopbackProxy]]]:
    """A proxy in front of every host of ``url``; yields the URL through them, and the proxies.

    Raises:
        ValueError: the URL names no host (an in-process store has no connection to cut).
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        raise ValueError(f"{url!r} names no host to put a proxy in front of")
    with contextlib.ExitStack() as stack:
        proxies = []
        for entry in parts.netloc.split(","):
            host, _, port = entry.rpartition(":")
            proxies.append(stack.enter_context(LoopbackProxy((host.strip("[]"), int(port)))))
        through = parts._replace(netloc=",".join(proxy.address for proxy in proxies))
        yield urllib.parse.urlunsplit(through), proxies


@contextlib.contextmanager
def blocked(proxies: list[LoopbackProxy]) -> Iterator[None]:
    """Block every proxy at once (see :meth:`LoopbackProxy.blocked`)."""
    with contextlib.ExitStack() as stack:
        for proxy in proxies:
            stack.enter_context(proxy.blocked())
        yield
