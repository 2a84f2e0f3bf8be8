"""Every use of kazoo's private API, in one place: the file to read when kazoo is upgraded.

kazoo 2.11 has no public way to send a request type or shape it does not
know (``addWatch``, ``multiRead``, a ``multi`` of version checks and a
create, whose zxid only the reply's header holds), to see the watch events
no one-shot watcher asked for, to tell whether anything still moves on its
connection, or to drop a connection the way a crashed process would. The
backend needs all of them, so it reaches into kazoo's internals here and only
here; each function says which private name it uses and what breaks if kazoo
changes it. The test suite exercises every function against a real server,
so an upgrade that moves one of these names fails loudly.
"""

from __future__ import annotations

import array
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.connection import ConnectionHandler
from kazoo.protocol.serialization import Auth, Connect, Watch

from discovery._secrets import REDACTED

__all__ = [
    "drop_connection",
    "messages_received",
    "redacting_logger",
    "reply_zxid",
    "send_request",
    "shut_socket",
    "tap_watch_events",
    "unread_bytes",
]

try:
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
except ImportError:  # pragma: no cover - Windows
    _FIONREAD = None

_REPLY_HEADER = struct.Struct("!iqi")

WatchEventTap = Callable[[int, str], None]
"""Called with ``(event type, server path)`` for every watch event the connection reads."""


def send_request(client: KazooClient, request: Any, reply: Any) -> None:
    """Queue ``request`` (an object with ``type``, ``serialize()``, ``deserialize()``) on the client's connection.

    Private: ``KazooClient._call``, the method every public request method
    ends in. It queues the request on the connection and sets ``reply`` (an
    async result of ``client.handler``) with the deserialized answer or the
    server's error. ``deserialize`` runs on the connection thread, where
    kazoo catches what it raises; but the answer of a request of type 14
    (``multi``) then goes through ``Transaction.unchroot``, which iterates it
    outside that guard, so such a request must answer with a list.
    """
    client._call(request, reply)


class _TappedConnection(ConnectionHandler):  # type: ignore[misc]
    """kazoo's connection handler, but every watch event is shown to a tap before kazoo dispatches it.

    It also counts the messages it reads (replies, watch events, pings):
    :func:`messages_received` tells a thread waiting for a reply whether the
    connection is still making progress.
    """

    tap: WatchEventTap | None = None
    received: int = 0

    def _read_socket(self, read_timeout: float) -> Any:
        # Private: ConnectionHandler._read_socket(read_timeout), called on the
        # connection thread once per message the server sent (reply, watch
        # event or ping). Only this thread writes the count; readers see it
        # move or not, which is all they ask.
        self.received += 1
        return super()._read_socket(read_timeout)

    def _read_watch_event(self, buffer: bytes, offset: int, *extra: Any) -> Any:
        # Private: ConnectionHandler._read_watch_event(buffer, offset), called
        # on the connection thread for each event (xid -1). kazoo drops the
        # events of persistent watches, which no one-shot watcher asked for.
        if self.tap is not None:
            event, _ = Watch.deserialize(buffer, offset)
            self.tap(event.type, event.path)
        return super()._read_watch_event(buffer, offset, *extra)


def tap_watch_events(client: KazooClient, tap: WatchEventTap) -> None:
    """Show every watch event the client reads to ``tap``, on kazoo's connection thread. Call before ``start()``.

    Private: ``KazooClient._connection`` (the handler, replaced by a subclass
    built as kazoo builds it: ``KazooClient._conn_retry``, and the old
    handler's ``logger`` and ``sasl_options``).
    """
    old = client._connection
    connection = _TappedConnection(client, client._conn_retry.copy(), logger=old.logger, sasl_options=old.sasl_options)
    connection.tap = tap
    client._connection = connection


def messages_received(client: KazooClient) -> int:
    """How many messages the client's connection has read so far, across reconnections; 0 if not tapped.

    Private: ``KazooClient._connection``, the handler :func:`tap_watch_events`
    installed, whose ``_read_socket`` counts each message.
    """
    return int(getattr(client._connection, "received", 0))


def unread_bytes(client: KazooClient) -> int:
    """How many bytes the server has sent that the client's connection thread has not read yet; 0 if unknown.

    Looks without reading (``FIONREAD`` on the socket, plus the bytes a TLS
    socket has decrypted already), so it takes nothing from kazoo's own
    reads. A count that moves shows the server is sending even while the
    connection thread, starved of the GIL, reads nothing. Where ``FIONREAD``
    does not exist (Windows), 0. Private: ``ConnectionHandler._socket``, the
    connected socket or None.
    """
    sock = client._connection._socket
    if sock is None or _FIONREAD is None:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), _FIONREAD, count)
        pending = getattr(sock, "pending", None)
        decrypted = int(pending()) if pending is not None else 0
    except (OSError, ValueError):  # closed under us: the connection thread reports the drop
        return 0
    return int(count[0]) + decrypted


def reply_zxid(buffer: bytes, offset: int) -> int:
    """The zxid in the header of the reply that a request's ``deserialize(buffer, offset)`` is reading.

    For a write, ZooKeeper puts the zxid of its transaction there (for a
    ``multi``, the one zxid of all its operations). Private: kazoo's
    ``ConnectionHandler._read_response`` hands ``deserialize`` the whole
    reply, its header (xid: int, zxid: long, err: int, 16 bytes) ending at
    ``offset``.
    """
    _xid, zxid, _err = _REPLY_HEADER.unpack_from(buffer, offset - _REPLY_HEADER.size)
    return int(zxid)


def shut_socket(client: KazooClient) -> bool:
    """Shut the client's socket down, so the connection thread sees a drop at once; False if it has none.

    Private: ``ConnectionHandler._socket``, the connected socket or None.
    """
    sock = client._connection._socket
    if sock is None:
        return False
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    return True


def drop_connection(client: KazooClient, timeout: float) -> None:
    """Stop the client without ending its session, as a crash would: the server expires it after the timeout.

    Private: ``KazooClient._stopped`` (set, so kazoo does not reconnect) and
    ``ConnectionHandler.stop`` (ends the connection thread without the
    ``closeSession`` request that ``KazooClient.stop`` sends).
    """
    client._stopped.set()
    shut_socket(client)
    client._connection.stop(timeout)


class _SecretsFilter(logging.Filter):
    """Masks the credentials kazoo puts in its own log records, at DEBUG and below.

    Private: what kazoo 2.11 logs on its client's logger. ``Sending
    request(xid=..): %s`` (DEBUG) shows the ``Auth`` request with the digest
    ``user:password`` and the ``Connect`` request with the session password;
    ``Read response %s`` (level 5) the ``Connect`` answer; ``Using
    session_id: %r session_passwd: %s`` and ``Session created, ...
    session_passwd: %s`` (level 5) the session password, hexlified. The
    session password lets anyone take the session over, so it is a secret
    like the digest.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            if "session_passwd" in str(record.msg):
                record.args = tuple(REDACTED if isinstance(arg, bytes | bytearray) else arg for arg in args)
            else:
                record.args = tuple(_masked(arg) for arg in args)
        return True


def _masked(arg: object) -> object:
    if isinstance(arg, Auth):
        return arg._replace(auth=REDACTED)
    if isinstance(arg, Connect):
        return arg._replace(passwd=REDACTED)
    return arg


_FILTER = _SecretsFilter()


def redacting_logger() -> logging.Logger:
    """kazoo's client logger (``kazoo.client``), with a filter that masks the credentials kazoo logs.

    Pass it as ``KazooClient(logger=...)``: kazoo's connection logs through
    the client's logger, and a logger's filters see only the records logged
    on it, so the filter sits there and not on a parent.
    """
    logger = logging.getLogger("kazoo.client")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
