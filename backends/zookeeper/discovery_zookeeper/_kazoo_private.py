"""Every use of kazoo's private API, in one place: the file to read when kazoo is upgraded.

kazoo 2.11 has no public way to send a request type it does not know
(``addWatch``, ``multiRead``), to see the watch events no one-shot watcher
asked for, or to drop a connection the way a crashed process would. The
backend needs all three, so it reaches into kazoo's internals here and only
here; each function says which private name it uses and what breaks if kazoo
changes it. The test suite exercises every function against a real server,
so an upgrade that moves one of these names fails loudly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.protocol.connection import ConnectionHandler
from kazoo.protocol.serialization import Auth, Connect, Watch

from discovery._secrets import REDACTED

__all__ = ["drop_connection", "redacting_logger", "send_request", "shut_socket", "tap_watch_events"]

WatchEventTap = Callable[[int, str], None]
"""Called with ``(event type, server path)`` for every watch event the connection reads."""


def send_request(client: KazooClient, request: Any, reply: Any) -> None:
    """Queue ``request`` (an object with ``type``, ``serialize()``, ``deserialize()``) on the client's connection.

    Private: ``KazooClient._call``, the method every public request method
    ends in. It queues the request on the connection and sets ``reply`` (an
    async result of ``client.handler``) with the deserialized answer or the
    server's error.
    """
    client._call(request, reply)


class _TappedConnection(ConnectionHandler):  # type: ignore[misc]
    """kazoo's connection handler, but every watch event is shown to a tap before kazoo dispatches it."""

    tap: WatchEventTap | None = None

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
