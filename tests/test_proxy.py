"""The loopback proxy's throttle: the server's bytes arrive whole and in order, no faster than the rate."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from discovery.testing.proxy import LoopbackProxy

PAYLOAD = bytes(range(256)) * 160
"""40,960 bytes the server sends at once."""


@contextlib.contextmanager
def sender() -> Iterator[tuple[str, int]]:
    """A server on loopback that sends :data:`PAYLOAD` to each client once it has read one byte from it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                with client:
                    client.recv(1)
                    client.sendall(PAYLOAD)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        thread.join(timeout=5)


def fetch(address: tuple[str, int]) -> tuple[bytes, float]:
    """Ask for the payload; return it and the seconds it took."""
    with socket.create_connection(address, timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(b"?")
        received = bytearray()
        while len(received) < len(PAYLOAD) and (data := sock.recv(65536)):
            received += data
        return bytes(received), time.monotonic() - started


def test_a_throttled_link_delivers_everything_in_order_no_faster_than_its_rate() -> None:
    with sender() as upstream, LoopbackProxy(upstream) as proxy:
        with proxy.throttled(20_000):
            data, seconds = fetch(("127.0.0.1", proxy.port))
        assert data == PAYLOAD
        # 40,960 bytes at 20,000 bytes/s: the proxy waits out each slice it sent.
        assert seconds >= len(PAYLOAD) / 20_000 * 0.9
        # The throttle ends with its block: the same link is at full speed again.
        assert fetch(("127.0.0.1", proxy.port))[0] == PAYLOAD


def test_a_throttle_needs_a_positive_rate() -> None:
    with LoopbackProxy(("127.0.0.1", 9)) as proxy, pytest.raises(ValueError, match="bytes_per_second"):
        proxy.throttled(0).__enter__()
