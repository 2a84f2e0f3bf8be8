"""Free TCP ports on 127.0.0.1 for local servers.

A port is proven free by binding it, then released for the server to take.
Ports are drawn at random *below* the kernel's ephemeral range when it leaves
room: the kernel hands ports of that range to outgoing connections (every
client of our servers makes some), so a port picked there with ``bind(port=0)``
can be taken by a client socket between a member's kill and its restart on the
same port. Below the range only listeners compete, and the bind check sees
them. Where the range cannot be read or leaves no room, ``bind(port=0)`` is the
fallback. Ports handed out once are never handed out again by this process, so
two clusters started side by side cannot pick the same port; a residual race
with another program remains, which is why cluster start retries on a bind
conflict.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOW = 15000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_MIN_POOL = 2000

_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_low() -> int | None:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def free_ports(count: int) -> list[int]:
    """Pick distinct free TCP ports on 127.0.0.1.

    Args:
        count: how many ports.

    Returns:
        ``count`` distinct ports, free at the time of the call and never
        returned before by this process.

    Raises:
        OSError: no free port could be found.
    """
    high = _ephemeral_low()
    use_low_range = high is not None and high - _LOW >= _MIN_POOL
    held: list[socket.socket] = []
    ports: list[int] = []
    with _lock:
        try:
            attempts = 0
            while len(ports) < count:
                attempts += 1
                if attempts > 10 * count + 1000:
                    raise OSError(f"no free TCP port found on 127.0.0.1 after {attempts - 1} attempts")
                candidate = random.randrange(_LOW, high) if use_low_range and high is not None else 0
                if candidate in _handed_out:
                    continue
                sock = _bindable(candidate)
                if sock is None:
                    continue
                port = int(sock.getsockname()[1])
                if port in _handed_out or port in ports:
                    sock.close()
                    continue
                held.append(sock)
                ports.append(port)
            _handed_out.update(ports)
        finally:
            for sock in held:
                sock.close()
    return ports
