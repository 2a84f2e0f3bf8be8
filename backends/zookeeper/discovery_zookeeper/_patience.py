"""How long to wait for a reply from ZooKeeper: as long as the connection makes progress.

ZooKeeper answers one connection's requests in order, and its watch events
travel on the same connection. A reply can therefore be slow without anything
being wrong: behind tens of thousands of watch events from a burst of expiries,
which kazoo's connection thread reads one at a time (under the GIL, shared
with everything else in the process), a read waits as long as reading them
takes. Taking that wait for a lost connection would be wrong twice: the
connection is fine, and what follows (a watch's resync, a listing retried
from scratch) adds more load where there is too much already.

So a request is given up only when it is truly stuck: when the connection
has read *nothing at all* (no reply, no watch event, no ping answer) for
``stall_timeout`` seconds, and the bytes the server sent that kazoo has not
read yet did not change either (a connection thread starved of the GIL while
the server keeps sending is slow, not stuck). Loss has its own, better
signal, the client's own state: when the connection drops, kazoo fails every
request sent on it at once with ``ConnectionLoss`` (or
``SessionExpiredError``) and reports SUSPENDED or LOST, and a wait that finds
the client not connected ends with ``ConnectionLoss`` too (a request kazoo
holds back for the next connection is no reply on this one); a silent server
is noticed by kazoo's own pings within two thirds of the session timeout. A
stall therefore means what no other signal covers: the connection thread
itself stopped reading, or a server that keeps the connection open but
answers nothing. It raises kazoo's timeout exception,
which the error table turns into :class:`~discovery.errors.BackendTimeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from discovery.errors import RegistryClosed
from discovery_zookeeper._kazoo_private import messages_received, unread_bytes

__all__ = ["Patience"]

_SLICE = 0.25
"""Seconds between two looks at the connection's progress (and at whether the waiter should give up)."""


class Patience:
    """Waits for kazoo async results as long as anything moves on the client's connection.

    Args:
        client: the kazoo client whose connection carries the requests
            (its connection handler must be tapped, see
            :func:`~discovery_zookeeper._kazoo_private.tap_watch_events`,
            or no progress is ever seen and every slow reply stalls).
        stall_timeout: seconds without any message read or byte received before a
            request counts as timed out.
    """

    def __init__(self, client: KazooClient, stall_timeout: float) -> None:
        self._client = client
        self.stall_timeout = stall_timeout
        self._slice = min(_SLICE, stall_timeout / 4)

    def wait(self, result: Any, cancelled: Callable[[], bool] | None = None) -> Any:
        """The value of ``result`` (a kazoo async result), once the server answered.

        Args:
            result: what a kazoo ``*_async`` call (or ``send_request``) returned.
            cancelled: checked between looks; when it returns True the wait
                ends with :class:`RegistryClosed` (e.g. the stream was closed).

        Returns:
            The result's value.

        Raises:
            kazoo.handlers.threading.KazooTimeoutError: nothing moved on the
                connection (no message read, no new byte received) for
                ``stall_timeout`` seconds while the reply was due.
            kazoo.exceptions.ConnectionLoss: the client was found not connected
                (SUSPENDED or LOST) while the reply was due.
            RegistryClosed: ``cancelled()`` returned True.
            Exception: whatever the request failed with (``ConnectionLoss``
                when the connection dropped, a ``ZookeeperError`` the server sent...).
        """
        read = messages_received(self._client)
        progressed = time.monotonic()
        if result.wait(self._slice):
            return result.get(block=False)
        unread = unread_bytes(self._client)
        while True:
            if cancelled is not None and cancelled():
                raise RegistryClosed("the wait for a ZooKeeper reply was cancelled")
            if not self._client.connected:
                raise ConnectionLoss("the connection dropped while a reply was due")
            now = time.monotonic()
            state = (messages_received(self._client), unread_bytes(self._client))
            if state != (read, unread):
                (read, unread), progressed = state, now
            elif now - progressed >= self.stall_timeout:
                raise self._client.handler.timeout_exception(
                    f"nothing moved on the connection for {self.stall_timeout:g} s while a reply was due"
                )
            if result.wait(min(self._slice, max(progressed + self.stall_timeout - now, 0.001))):
                return result.get(block=False)
