"""etcd v2 sessions: a group of TTL keys kept alive by ``refresh=true`` writes, each key on its own schedule.

v2 has no leases, so keeping N instances alive costs N refresh requests per
refresh interval (a third of the TTL): N x 3 / ttl a second, 3,000 for
10,000 keys at a 10 s TTL. Each key is due a third of the TTL after its last
confirmed write or refresh. The due keys wait in one queue ordered by due
time, which is their order of expiry too, and a small pool of workers takes
them from its head, earliest expiry first, each worker sending one refresh
at a time on a keep-alive HTTP connection of its own. So as many refreshes
are in flight as there are busy workers, and a late key waits only for the
keys that expire before it, never for a whole batch. (The refreshes used to
be cut into rounds of four contiguous chunks, each refreshed in turn by one
thread through python-etcd, so the oldest chunk's last key waited for the
whole round: 1,000 to 1,400 refreshes a second, and 10,000 keys at ttl 10 s
expired.) The pool starts with one worker and grows, up to
:data:`REFRESH_WORKERS`, while refreshes run late.

The workers are coroutines of one event loop in the session's thread, on
HTTP/1.1 connections of their own (:class:`_Connection`): measured on 2
cores, a refresh costs the client about 50 us of CPU there, against about
160 us through ``http.client`` in a thread per connection and 350 us through
python-etcd and urllib3, and the GIL is not handed between a dozen threads
at each request. A refresh asks etcd for no value back
(``noValueOnSuccess``): the new modifiedIndex comes in the ``X-Etcd-Index``
header. What the refreshes find (a key gone, the session lost) is reported
from a thread of its own, so a slow listener never holds up a refresh.

The session measures what it sustains: the refreshes a second completed
over windows in which every worker was busy throughout
(:attr:`TtlSession.refresh_capacity`). When the keys held need more
(:attr:`TtlSession.refresh_demand`, N x 3 / ttl), it says so, with the
figures, as a :class:`RefreshCapacityWarning` and a logged warning, and
:attr:`TtlSession.overloaded` turns True: each key is then refreshed every
N / capacity seconds instead of every third of its TTL, so it outlives a
shorter outage, and past N = capacity x ttl keys expire.

A refresh waits for a member's answer at most a refresh interval (a third
of the TTL; the backend's ``timeout`` if shorter), then asks the next
endpoint: a member that stalls (paused, or waiting for a new leader after
the old one died) costs a third of the key's life, not the whole of it.

A key found gone at its refresh (it expired, say because the server stalled
longer than its TTL, or another client deleted it) is reported alone
(:meth:`~discovery.backend.Session.add_key_listener`), and the core puts
that one registration again: its siblings, still alive, are not touched.
Only when a key's refreshes fail for a whole TTL (the server is
unreachable) is the session lost, as a lease would be: it deletes its
remaining keys and reports itself dead. (While no endpoint answers, the
workers pause for half a second after each failure, so an outage costs a
few requests a second, not one per key.) A write that completes after the
loss is undone by its caller (:meth:`TtlSession.hold` refuses it), so no key
of a lost session outlives the loss unrefreshed. Deletes are conditioned on
the modifiedIndex the session last saw for the key, not on its value:
python-etcd sends a delete's conditions in the URL, and etcd resets a
request line longer than 4 KB, so a value-conditioned delete of a large
value could never succeed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import heapq
import itertools
import json
import logging
import math
import queue
import secrets
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlencode, urlsplit

import etcd

from discovery.backend import Session
from discovery_etcd._errors import V2_ERRORS

if TYPE_CHECKING:
    from discovery_etcd._common import ConnectionSettings
    from discovery_etcd._v2 import Etcd2Backend

__all__ = ["REFRESH_WORKERS", "RefreshCapacityWarning", "TtlSession"]

_log = logging.getLogger(__name__)

#: The most refreshes one session keeps in flight (workers, each with one
#: HTTP connection). Measured on 2 cores against a local etcd: about 2,300
#: refreshes a second with one in flight, 5,000 to 7,000 with 8 to 16 on a
#: quiet machine (etcd commits concurrent writes together), fewer with 32.
REFRESH_WORKERS = 16
# A refresh taken from the queue this late means the workers fall behind: one more is started.
_LATE_SECONDS = 0.05
# The longest wait before a failed refresh is tried again (a quarter of the refresh interval if shorter).
_RETRY_SECONDS = 0.5
# The shortest a refresh waits for a member's answer, however short the ttl (see TtlSession._request_timeout).
_MIN_REQUEST_SECONDS = 0.5
# The refresh rate is measured over windows of this length.
_WINDOW_SECONDS = 2.0
# While overloaded, the warning is repeated this often at most (sooner if the demand grew by a tenth).
_WARN_REPEAT_SECONDS = 300.0
# A conditional delete whose index moved is read and tried again this often.
_DELETE_ATTEMPTS = 3
_KEYS_ENDPOINT = "/v2/keys"
# The largest response head a refresh reads (etcd's are a few hundred bytes).
_HEAD_LIMIT = 1 << 16


class RefreshCapacityWarning(RuntimeWarning):
    """An etcd v2 session holds more keys than it can refresh every third of their TTL (N x 3 / ttl per second)."""


@dataclass
class _Held:
    """One key of the session: the value it wrote, when its last confirmed write or refresh was sent, the
    modifiedIndex that write or refresh gave it (deletes are conditioned on it), its refresh schedule, and
    its refresh request, built once."""

    value: str
    sent: float
    index: int
    due: float
    target: bytes = field(repr=False)
    body: bytes = field(repr=False)
    busy: bool = False
    failing_since: float | None = None


def _tls_context(settings: ConnectionSettings) -> ssl.SSLContext:
    """The TLS context of the backend's settings: the CA (or the system's) and the client certificate."""
    context = ssl.create_default_context(cafile=settings.ca or None)
    if settings.cert:
        context.load_cert_chain(settings.cert, settings.key or None)
    return context


class _Connection:
    """One keep-alive HTTP/1.1 connection to one endpoint, used by one worker for one request at a time.

    Args:
        endpoint: the base URL, ``http://127.0.0.1:2379``.
        tls: the TLS context, for ``https``.
        headers: the request headers every request carries (``Name: value\\r\\n`` each).
    """

    def __init__(self, endpoint: str, tls: ssl.SSLContext | None, headers: bytes) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self._tls = tls if parts.scheme == "https" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._headers = b"Host: " + parts.netloc.encode("ascii") + b"\r\n" + headers
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may have been closed by the server since)."""
        return self._writer is not None

    async def put(self, target: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``PUT target`` with a form ``body``; etcd's status, headers (lower-case names) and body.

        Raises:
            OSError: the connection failed or broke (asyncio's stream errors as ConnectionError).
        """
        try:
            if self._reader is None or self._writer is None:
                server_hostname = self._host if self._tls else None
                self._reader, self._writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._tls, server_hostname=server_hostname, limit=_HEAD_LIMIT
                )
            reader, writer = self._reader, self._writer
            head = b"PUT %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (target, self._headers, len(body))
            writer.write(head + body)
            status, headers = self._head(await reader.readuntil(b"\r\n\r\n"))
            if "chunked" in headers.get("transfer-encoding", "").lower():
                data = await self._chunked(reader)
            elif "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
            else:
                data = await reader.read()
                headers["connection"] = "close"
        except OSError:
            self.close()
            raise
        except (EOFError, ValueError, IndexError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise ConnectionError(f"{self.endpoint}: broken answer: {exc!r}") from exc
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    @staticmethod
    def _head(head: bytes) -> tuple[int, dict[str, str]]:
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        """Close the connection, if open. Never raises."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()


class TtlSession(Session):
    """A group of v2 keys with one TTL, each refreshed a third of the TTL after its last write, earliest expiry first.

    Its :attr:`id` is a random token the core writes into each value as
    ``registrant``. A key found gone at its refresh (KeyNotFound) is released
    and reported to the key listeners. When a key's refreshes fail for a
    whole TTL, the session is lost: it deletes its remaining keys, as an
    expired lease would, and reports itself not alive.

    Each key's refresh counts as one keep-alive request; one that fails or
    finds the key gone counts as failed.

    Args:
        backend: the backend whose keys the session holds.
        ttl: the TTL asked for; v2 TTLs are whole seconds, so ``ceil(ttl)``.
        workers: the most refreshes in flight (tests pass fewer to reach the limit sooner).
    """

    counts_keepalives: ClassVar[bool] = True

    def __init__(self, backend: Etcd2Backend, ttl: float, *, workers: int = REFRESH_WORKERS) -> None:
        super().__init__(ttl, backend)
        self._backend = backend
        self.ttl_seconds = max(1, math.ceil(ttl))
        self._interval = self.ttl_seconds / 3
        self._retry = min(self._interval / 4, _RETRY_SECONDS)
        # A refresh waits for one member at most a refresh interval (the backend's timeout if
        # shorter): a member that stalls (paused, or waiting for a leader) costs a third of the
        # ttl, then the next endpoint is asked, while the key still lives.
        self._request_timeout = min(backend.settings.timeout, max(self._interval, _MIN_REQUEST_SECONDS))
        self._id = secrets.token_hex(8)
        self._held: dict[str, _Held] = {}
        # The refresh schedule: (due, sequence, key), earliest first. An entry
        # whose key is gone, busy or due at another time is stale and skipped.
        self._queue: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._held_lock = threading.Lock()
        self._ended = False
        self._losing = False
        self._stopped = threading.Event()
        self._closed = False
        self._max_workers = max(1, workers)
        self._workers = 0
        # After a refresh found no endpoint, none is sent until then: an outage costs a few requests a retry.
        self._paused_until = -math.inf
        # Since when refreshes find no endpoint (None: the last one was answered), and when one last was.
        self._unreachable_since: float | None = None
        self._answered_at = -math.inf
        self._tls = _tls_context(backend.settings) if backend.settings.protocol == "https" else None
        headers = "Content-Type: application/x-www-form-urlencoded\r\n"
        if backend.settings.user:
            credentials = f"{backend.settings.user}:{backend.settings.password}".encode()
            headers += f"Authorization: Basic {base64.b64encode(credentials).decode('ascii')}\r\n"
        self._headers = headers.encode("latin-1")
        # The event loop of the workers, in the session's thread, started with the first key.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_ready = threading.Event()
        self._halt: asyncio.Event | None = None
        self._crash: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Workers with nothing due wait in line; one timer wakes the first when the head of the queue is due.
        self._idlers: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        # What the refreshes found, told from a thread of their own.
        self._reports: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._reporter: threading.Thread | None = None
        # The measurement window: refreshes completed, whether a worker waited for work.
        self._window_start = time.monotonic()
        self._window_done = 0
        self._window_idle = False
        self._window_lag = 0.0
        self._warned_at = -math.inf
        self._warned_demand = 0.0
        self.refresh_rate = 0.0
        """Refreshes a second completed over the last measurement window (a couple of seconds)."""
        self.refresh_capacity: float | None = None
        """Refreshes a second this session sustains, measured while all its workers were busy; None until then."""
        self.refresh_lag = 0.0
        """The longest a refresh waited past its due time over the last window, in seconds: a key expires
        when its refresh waits two thirds of the TTL."""
        self.overloaded = False
        """Whether the keys held need more refreshes a second (:attr:`refresh_demand`) than :attr:`refresh_capacity`."""

    @property
    def id(self) -> str:
        return self._id

    @property
    def refresh_demand(self) -> float:
        """Refreshes a second the keys held need to be refreshed every third of the TTL: N x 3 / ttl."""
        return len(self._held) / self._interval

    def held(self) -> dict[str, str]:
        """The etcd keys this session holds, with the value it wrote to each."""
        with self._held_lock:
            return {full: held.value for full, held in self._held.items()}

    def index_of(self, full: str) -> tuple[str, int] | None:
        """The value this session wrote to ``full`` and the modifiedIndex it last saw there; None if not held."""
        with self._held_lock:
            held = self._held.get(full)
            return None if held is None else (held.value, held.index)

    def hold(self, full: str, value: str, sent: float, index: int) -> bool:
        """Record a write of ``value`` to ``full`` sent at ``sent`` (``time.monotonic()``), at modifiedIndex ``index``.

        The key is refreshed a third of the TTL after ``sent``.

        Returns:
            False when the session ended meanwhile: the caller must delete
            the key it wrote and report the session lost.
        """
        target = (_KEYS_ENDPOINT + self._backend.keys.url_path(full)).encode("ascii")
        fields = {"ttl": self.ttl_seconds, "refresh": "true", "prevValue": value, "noValueOnSuccess": "true"}
        body = urlencode(fields).encode("ascii")
        with self._held_lock:
            if self._ended:
                return False
            held = _Held(value, sent, index, sent + self._interval, target, body)
            self._held[full] = held
            self._schedule(full, held)
            start = self._thread is None and not self._stopped.is_set()
            if start:
                self._thread = self._start_thread(f"etcd2-refresh-{self._id}", self._run)
            warning = self._overload_message(time.monotonic())
        self._warn(warning)
        return True

    def release(self, full: str, value: str | None = None) -> None:
        """Forget a key (only while it still has ``value``, when given)."""
        with self._held_lock:
            held = self._held.get(full)
            if held is not None and (value is None or held.value == value):
                del self._held[full]

    # -- the schedule (every method here that says so runs under _held_lock)

    def _schedule(self, full: str, held: _Held) -> None:
        """Queue ``held``'s next refresh at ``held.due``; wake the workers if it comes first. Caller holds the lock."""
        entry = (held.due, next(self._sequence), full)
        heapq.heappush(self._queue, entry)
        if self._queue[0] is entry:
            self._wake()

    def _wake(self) -> None:
        """A new head of the queue: wake one waiting worker to look at it, from any thread. Never raises."""
        loop = self._loop
        if loop is None:
            return
        if threading.current_thread() is self._thread:
            self._wake_one()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(self._wake_one)

    def _wake_one(self) -> None:
        """Wake the first waiting worker, if any. Runs in the loop."""
        self._timer = None
        while self._idlers:
            idler = self._idlers.popleft()
            if not idler.done():
                idler.set_result(None)
                return

    def _head(self) -> tuple[str, _Held] | None:
        """The first live entry of the queue, stale ones dropped on the way. Caller holds the lock."""
        while self._queue:
            due, _, full = self._queue[0]
            held = self._held.get(full)
            if held is not None and not held.busy and held.due == due:
                return full, held
            heapq.heappop(self._queue)
        return None

    def _take(self) -> tuple[str, _Held] | float | None:
        """The due key that expires first, taken (busy); else the seconds until the head is due (None: empty).

        Runs in the loop. Should the next key be due as well, one more
        waiting worker is woken (or, while refreshes run late, started).
        """
        with self._held_lock:
            now = time.monotonic()
            if now < self._paused_until:
                self._window_idle = True
                return self._paused_until - now
            head = self._head()
            if head is None or head[1].due > now:
                self._window_idle = True
                return None if head is None else head[1].due - now
            full, held = head
            heapq.heappop(self._queue)
            held.busy = True
            self._window_lag = max(self._window_lag, now - held.due)
            following = self._head()
            if following is not None and following[1].due <= now:
                if self._idlers:
                    self._wake_one()
                elif now - held.due > _LATE_SECONDS and self._workers < self._max_workers:
                    self._add_worker()
            return full, held

    # -- the workers, in the session's thread

    def _run(self) -> None:
        asyncio.run(self._main())
        if self._crash is not None:
            raise self._crash  # a bug in a worker: the thread dies reported, the session is replaced

    async def _main(self) -> None:
        self._halt = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop_ready.set()
        if self._stopped.is_set():
            return
        with self._held_lock:
            self._add_worker()
        try:
            await self._halt.wait()
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _add_worker(self) -> None:
        """Start one more worker. Caller holds the lock and runs in the loop."""
        self._workers += 1
        task = asyncio.get_running_loop().create_task(self._work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        connections: dict[str, _Connection] = {}
        try:
            while not self._stopped.is_set():
                job = self._take()
                if not isinstance(job, tuple):
                    await self._idle(job)
                    continue
                full, held = job
                sent = time.monotonic()
                outcome = await self._refresh(connections, held)
                self._done(full, held, sent, outcome)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: end the loop, the thread reports it
            self._crash = exc
            if self._halt is not None:
                self._halt.set()
        finally:
            for connection in connections.values():
                connection.close()

    async def _idle(self, delay: float | None) -> None:
        """Wait in line until woken: by the timer when the head of the queue is due (``delay`` seconds), or sooner."""
        loop = asyncio.get_running_loop()
        idler = loop.create_future()
        self._idlers.append(idler)
        if delay is not None:
            when = loop.time() + delay
            if self._timer is None or self._timer.when() > when:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(when, self._wake_one)
        await idler

    async def _refresh(self, connections: dict[str, _Connection], held: _Held) -> object:
        """Refresh one key: its new modifiedIndex, ``"expired"``, ``"replaced"`` or the exception."""
        endpoints = self._backend.endpoints
        last: BaseException | None = None
        for endpoint in endpoints.order():
            connection = connections.get(endpoint)
            if connection is None:
                connection = connections[endpoint] = _Connection(endpoint, self._tls, self._headers)
            try:
                status, headers, data = await self._put(connection, held)
            except OSError as exc:  # not reached, or no answer in time: the next endpoint
                last = exc
                continue
            endpoints.prefer(endpoint)
            try:
                return self._answer(status, headers.get("x-etcd-index"), data)
            except etcd.EtcdKeyNotFound:
                return "expired"
            except etcd.EtcdCompareFailed:
                return "replaced"
            except Exception as exc:  # any failure counts; keys survive it up to the TTL
                return exc
        return last or ConnectionError("no etcd endpoint")

    async def _put(self, connection: _Connection, held: _Held) -> tuple[int, dict[str, str], bytes]:
        """The refresh request on ``connection``; once more on a new connection if a kept-alive one had closed."""
        reused = connection.connected
        try:
            async with asyncio.timeout(self._request_timeout):
                return await connection.put(held.target, held.body)
        except TimeoutError:
            connection.close()
            raise
        except OSError:
            if not reused:
                raise
        async with asyncio.timeout(self._request_timeout):
            return await connection.put(held.target, held.body)

    @staticmethod
    def _answer(status: int, index: str | None, data: bytes) -> int:
        if status in (200, 201) and index is not None:
            return int(index)
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if isinstance(document, dict) and "errorCode" in document:
            etcd.EtcdError.handle({**document, "status": status})
        raise etcd.EtcdException(f"unexpected answer to a refresh: {status} {data[:200]!r}")

    def _done(self, full: str, held: _Held, sent: float, outcome: object) -> None:
        """Record a refresh's outcome and schedule the key's next; a key gone or the session lost is reported."""
        report: Callable[[], None] | None = None
        with self._held_lock:
            now = time.monotonic()
            current = self._held.get(full) is held  # not released or rewritten meanwhile
            held.busy = False
            failed = outcome == "expired" or isinstance(outcome, BaseException)
            self._count_keepalives(1, 1 if failed else 0)
            self._window_done += 1
            if isinstance(outcome, int):
                self._backend.accepted()
                # A refresh moves modifiedIndex: the next delete is conditioned on it.
                held.index = max(held.index, outcome)
                held.sent = max(held.sent, sent)
                held.failing_since = None
                held.due = held.sent + self._interval
                if current:
                    self._schedule(full, held)
            elif outcome == "expired" and current:
                del self._held[full]
                report = lambda: self._report_gone(full)  # noqa: E731
            elif outcome == "replaced" and current:
                del self._held[full]
                report = lambda: self._report_replaced(full)  # noqa: E731
            if isinstance(outcome, OSError):
                # No endpoint answered: pause, and count the outage for the whole session.
                self._paused_until = max(self._paused_until, now + self._retry)
                self._unreachable_since = self._unreachable_since or max(sent, self._answered_at)
            else:
                self._unreachable_since, self._answered_at = None, now
            if isinstance(outcome, BaseException) and current:
                held.failing_since = held.failing_since or sent
                held.due = now + self._retry
                self._schedule(full, held)
            failing = [since for since in (self._unreachable_since, held.failing_since) if since is not None]
            if failing and now - min(failing) >= self.ttl_seconds and not self._losing:
                self._losing = True
                why = f"refreshes failed for {self.ttl_seconds} s: {outcome!r}"
                report = lambda: self._lost(why)  # noqa: E731
            warning = self._measure(now)
        self._warn(warning)
        if report is not None:
            self._report(report)

    # -- what the session sustains

    def _measure(self, now: float) -> str | None:
        """Close the measurement window if it is over; the warning to give, if any. Caller holds the lock."""
        elapsed = now - self._window_start
        if elapsed < _WINDOW_SECONDS:
            return None
        rate = self._window_done / elapsed
        self.refresh_rate, self.refresh_lag = rate, self._window_lag
        if not self._window_idle and self._workers >= self._max_workers:
            # Every worker busy throughout: this is what the session sustains.
            capacity = self.refresh_capacity
            self.refresh_capacity = rate if capacity is None else (capacity + rate) / 2
        elif self.refresh_capacity is not None and rate > self.refresh_capacity:
            self.refresh_capacity = rate
        self._window_start, self._window_done, self._window_idle, self._window_lag = now, 0, False, 0.0
        return self._overload_message(now)

    def _overload_message(self, now: float) -> str | None:
        """Whether the keys need more than the measured capacity; the warning to give, if due. Caller holds the lock."""
        capacity = self.refresh_capacity
        count = len(self._held)
        demand = count / self._interval
        if capacity is None or demand <= capacity:
            if self.overloaded:
                self.overloaded = False
                _log.info(
                    "etcd2 session %s: %d keys need %.0f refreshes/s, within its %.0f/s",
                    self._id,
                    count,
                    demand,
                    capacity,
                )
            return None
        self.overloaded = True
        if now - self._warned_at < _WARN_REPEAT_SECONDS and demand <= self._warned_demand * 1.1:
            return None
        self._warned_at, self._warned_demand = now, demand
        ttl = self.ttl_seconds
        period = count / capacity
        return (
            f"etcd2 session {self._id}: {count} keys at ttl {ttl} s need {demand:.0f} refreshes/s (N x 3 / ttl), "
            f"but this session sustains about {capacity:.0f}/s (measured): each key is refreshed every "
            f"{period:.1f} s instead of every {self._interval:.1f} s, so it outlives an outage of "
            f"{max(0.0, ttl - period):.1f} s at most, and past {int(capacity * ttl)} keys they expire. "
            f"Hold at most {int(capacity * self._interval)} keys per process at ttl {ttl} s, "
            f"or use a ttl of at least {math.ceil(3 * count / capacity)} s"
        )

    @staticmethod
    def _warn(message: str | None) -> None:
        if message is not None:
            _log.warning("%s", message)
            warnings.warn(message, RefreshCapacityWarning, stacklevel=3)

    # -- reports, loss and the end

    def _report(self, report: Callable[[], None]) -> None:
        """Run ``report`` in the reporter thread (started on first use), never in the workers' loop."""
        with self._held_lock:
            if self._reporter is None:
                self._reporter = self._start_thread(f"etcd2-report-{self._id}", self._report_all)
        self._reports.put(report)

    def _report_all(self) -> None:
        while (report := self._reports.get()) is not None:
            report()

    def _report_replaced(self, full: str) -> None:
        if not self._stopped.is_set():
            _log.warning("etcd2 session %s: key %s was overwritten by another writer", self._id, full)

    def _report_gone(self, full: str) -> None:
        """One key expired (or was deleted by another client) while the others live on: let the core put it again."""
        if self._stopped.is_set():
            return
        key = self._backend.keys.relative(full)
        _log.warning("etcd2 session %s: key %s was gone at its refresh; reported for registering again", self._id, full)
        if key is not None:
            self._key_lost(key)

    def _end(self) -> dict[str, tuple[str, int]]:
        """Refuse further writes; return the keys held at that moment, with their values and indexes."""
        with self._held_lock:
            self._ended = True
            return {full: (held.value, held.index) for full, held in self._held.items()}

    def _lost(self, why: str) -> None:
        if self._stopped.is_set():
            return  # stopped or closed meanwhile
        _log.warning("etcd2 session %s lost: %s", self._id, why)
        self._stop_workers()
        self._delete_all(self._end())
        self.mark_lost()
        self._reports.put(None)

    def _delete_all(self, keys: dict[str, tuple[str, int]]) -> BaseException | None:
        """Delete every key still holding this session's value; the last unexpected error, if any."""
        error: BaseException | None = None
        for full, (value, index) in keys.items():
            try:
                self.delete_if(full, value, index)
            except (etcd.EtcdKeyNotFound, etcd.EtcdCompareFailed):
                pass
            except Exception as exc:  # keep deleting the others; the caller reports it
                error = exc
            self.release(full, value)
        return error

    def delete_if(self, full: str, value: str, index: int) -> etcd.EtcdResult:
        """Delete ``full`` while it holds ``value``; ``index`` is its modifiedIndex as this session last saw it.

        The delete is conditioned on the index (``prevIndex``), which fits
        in a URL whatever the value's size. Should the index have moved (a
        refresh answered after this was called, or another writer wrote the
        same value), the key is read and, while it still holds ``value``,
        deleted at the index read.

        Returns:
            etcd's answer to the delete.

        Raises:
            etcd.EtcdKeyNotFound: the key is gone.
            etcd.EtcdCompareFailed: the key holds another value (or kept changing).
        """
        path = self._backend.keys.url_path(full)
        for _ in range(_DELETE_ATTEMPTS):
            try:
                return self._delete_at(path, index)
            except etcd.EtcdCompareFailed:
                current = self._backend.call(lambda client: client.read(path, quorum=True))
                if current.dir or current.value != value:
                    raise
                index = int(current.modifiedIndex)
        raise etcd.EtcdCompareFailed(f"{full} kept changing during {_DELETE_ATTEMPTS} deletes")

    def _delete_at(self, path: str, index: int) -> etcd.EtcdResult:
        return self._backend.call(lambda client: client.delete(path, prevIndex=index))

    def _stop_workers(self) -> None:
        """Stop the workers (a request under way is abandoned) and wait for their thread, unless called from it."""
        with self._held_lock:
            self._stopped.set()
            thread = self._thread
        if thread is None:
            return
        self._loop_ready.wait(self._backend.settings.timeout + 1)
        loop, halt = self._loop, self._halt
        if loop is not None and halt is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(halt.set)
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(self._backend.settings.timeout + 1)

    def stop(self) -> None:
        """Stop refreshing without telling the server (the keys expire after the TTL)."""
        self._stop_workers()
        self._reports.put(None)

    def close(self) -> None:
        """Delete every key of the session (each only while it still holds this session's value). Idempotent.

        Raises:
            BackendUnavailable: etcd could not be reached (the keys expire after the TTL).
            BackendError: a delete failed.
        """
        if self._closed:
            return
        self._closed = True
        self.stop()
        error = self._delete_all(self._end())
        self.mark_lost()
        if error is not None:
            raise V2_ERRORS.translate(error, "close session") from error
