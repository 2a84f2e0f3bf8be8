"""What the v3 and v2 etcd backends share: options, settings, the key space and the threaded stream.

Both backends accept the same options (timeout, TLS files, credentials,
protocol), map keys relative to the registry root onto etcd keys the same
way (``buzz/api/host-1`` is ``<root>/buzz/api/host-1``), and read their
change stream the same way: a reader thread per stream turns the server's
answers into :class:`~discovery.backend.Batch` and :class:`~discovery.backend.Gap`
items, and ``close()`` ends the HTTP response (by shutting its socket down)
and the thread at once. A watch of the core takes the items from the reader
thread itself (``deliver_to``, the engine's push protocol): the reader
applies each batch to the watch and wakes its consumer, with no thread or
queue in between, as the socket wakes a bare client's reader. Until then,
or for whoever calls ``next(timeout)``, items wait on a bounded queue. A
full queue blocks the reader, which pushes back on etcd instead of
dropping anything: a v3 watcher then falls behind on the server and
catches up from history (or is cancelled by compaction: a Gap); a v2
watcher falls out of the 1000-event window (a Gap).
"""

from __future__ import annotations

import abc
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import requests

from discovery._background import start_thread
from discovery.backend import Backend, Batch, ChangeStream, Gap, Option, Sink
from discovery.errors import BackendError, BackendUnavailable, DiscoveryError, InvalidOption, RegistryClosed
from discovery.translation import ErrorTranslation

__all__ = [
    "ConnectionSettings",
    "Endpoints",
    "KeySpace",
    "OPTIONS",
    "QueuedStream",
    "Sink",
    "abort_response",
    "fetch_version",
    "make_http",
    "wait_forever",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

OPTIONS: Mapping[str, Option] = {
    "timeout": Option(float, 5.0, "seconds to wait for an answer from etcd", positive=True),
    "protocol": Option(
        str, "", "http or https; when empty, https if ca, cert or key is set, else http", choices=("", "http", "https")
    ),
    "ca": Option(str, "", "CA bundle file that verifies the server's certificate (implies https)"),
    "cert": Option(str, "", "client certificate file (implies https)"),
    "key": Option(str, "", "client private key file, for cert (implies https)"),
    "user": Option(str, "", "user name for etcd authentication"),
    "password": Option(str, "", "password for etcd authentication"),
}
"""The options both etcd backends accept, from the URL query, the config file or keywords."""


@dataclass(frozen=True)
class ConnectionSettings:
    """A backend's connection settings, read from its :class:`~discovery.backend.Target`.

    Attributes:
        protocol: ``http`` or ``https``.
        hosts: ``(host, port)`` pairs, tried in this order.
        timeout: seconds to wait for an answer.
        ca: CA bundle path, or ``""`` for the system's.
        cert: client certificate path, or ``""``.
        key: client key path, or ``""``.
        user: user name, or ``""`` for no authentication.
        password: the user's password.
    """

    protocol: str
    hosts: tuple[tuple[str, int], ...]
    timeout: float
    ca: str
    cert: str
    key: str
    user: str
    password: str = field(repr=False)

    default_port: ClassVar[int] = 2379

    @classmethod
    def of(cls, backend: Backend) -> ConnectionSettings:
        """The settings of ``backend``, from its options (converted and checked by the config layer).

        Raises:
            InvalidOption: a client key without a client certificate.
        """
        text = {name: str(backend.option(name) or "") for name in ("protocol", "ca", "cert", "key", "user", "password")}
        ca, cert, key = text["ca"], text["cert"], text["key"]
        if key and not cert:
            raise InvalidOption("key", key, "a client key needs a client certificate (cert)")
        protocol = text["protocol"] or ("https" if ca or cert or key else "http")
        hosts = backend.target.hosts or (("127.0.0.1", cls.default_port),)
        return cls(protocol, hosts, float(backend.option("timeout")), ca, cert, key, text["user"], text["password"])

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The base URLs, ``http://127.0.0.1:2379``, in the URL's order."""
        return tuple(f"{self.protocol}://{f'[{host}]' if ':' in host else host}:{port}" for host, port in self.hosts)

    @property
    def verify(self) -> bool | str:
        """The ``verify`` argument of requests: the CA bundle, or True for the system's."""
        return self.ca or True

    @property
    def client_cert(self) -> tuple[str, str] | str | None:
        """The ``cert`` argument of requests: ``(cert, key)``, a combined file, or None."""
        if not self.cert:
            return None
        return (self.cert, self.key) if self.key else self.cert


class Endpoints:
    """The etcd endpoints of a backend, tried in the URL's order from the one that answered last.

    Both etcd backends fail over the same way: a request goes to the
    preferred endpoint first; an endpoint that cannot be reached is skipped
    for the next; one that answers, even with an error, becomes preferred.

    Args:
        urls: the base URLs, in the URL's order.
    """

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._preferred = 0
        self._lock = threading.Lock()

    @property
    def preferred(self) -> str:
        """The endpoint that answered last (tried first next time)."""
        with self._lock:
            return self.urls[self._preferred]

    def order(self) -> list[str]:
        """Every endpoint, from the preferred one on."""
        with self._lock:
            first = self._preferred
        count = len(self.urls)
        return [self.urls[(first + step) % count] for step in range(count)]

    def prefer(self, url: str) -> None:
        """Try ``url`` first from now on."""
        with self._lock:
            self._preferred = self.urls.index(url)

    def skip(self, url: str) -> None:
        """Try the endpoint after ``url`` first from now on (``url`` answered too late to count)."""
        with self._lock:
            self._preferred = (self.urls.index(url) + 1) % len(self.urls)

    def first_answer(self, attempt: Callable[[str], _T], unreachable: Callable[[BaseException], bool]) -> _T:
        """Run ``attempt(url)`` on each endpoint in order until one answers, and prefer that one.

        Args:
            attempt: one try against one endpoint.
            unreachable: whether an exception means the endpoint could not be
                reached (the next is tried); any other exception is the
                endpoint's answer, raised as it is.

        Raises:
            BaseException: the answer's exception, or the last endpoint's when none could be reached.
        """
        last: BaseException | None = None
        for url in self.order():
            try:
                result = attempt(url)
            except Exception as exc:
                if unreachable(exc):
                    _log.debug("etcd endpoint %s unreachable: %s", url, exc)
                    last = exc
                    continue
                self.prefer(url)
                raise
            self.prefer(url)
            return result
        assert last is not None
        raise last


def make_http(settings: ConnectionSettings) -> requests.Session:
    """A requests session with the TLS settings applied (no credentials: each API authenticates its own way)."""
    http = requests.Session()
    http.verify = settings.verify
    http.cert = settings.client_cert
    http.trust_env = False
    return http


def fetch_version(http: requests.Session, settings: ConnectionSettings) -> str:
    """The etcd server version from ``/version`` of the first endpoint that answers; ``"unknown"`` if none."""
    for endpoint in settings.endpoints:
        try:
            answer = http.get(f"{endpoint}/version", timeout=settings.timeout)
            answer.raise_for_status()
            return str(answer.json()["etcdserver"])
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            _log.debug("version from %s failed: %s", endpoint, exc)
    return "unknown"


class KeySpace:
    """Maps keys relative to the registry root onto etcd keys and back.

    Args:
        root: the root, like ``/services``; ``""`` puts keys at ``/<key>``.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def full(self, key: str) -> str:
        """The etcd key of a relative key (or of a prefix ending in ``/``)."""
        return f"{self.root}/{key}"

    def relative(self, full: str) -> str | None:
        """The relative key of an etcd key; None if it is not under the root."""
        head = self.root + "/"
        return full[len(head) :] if full.startswith(head) else None


def _socket(response: requests.Response) -> socket.socket | None:
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def wait_forever(response: requests.Response) -> None:
    """Lift the read timeout of a streamed response whose start arrived: a quiet stream is not a dead one."""
    sock = _socket(response)
    if sock is not None:
        sock.settimeout(None)


def abort_response(response: requests.Response | None) -> None:
    """End a streamed HTTP response now, even while another thread is blocked reading it.

    Closing a socket does not wake a thread blocked in ``recv`` on it;
    shutting it down does. Never raises.
    """
    if response is None:
        return
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    try:
        response.close()
    except Exception as exc:  # closing a half-read response may raise anything from the HTTP stack
        _log.debug("closing a watch response: %r", exc)


class QueuedStream(ChangeStream):
    """A change stream whose items come from a reader thread: pushed to a sink, or queued for :meth:`next`.

    Subclasses implement :meth:`_run` (read the server, :meth:`_emit` items,
    return when the stream ends or :attr:`_closed` is set) and :meth:`_abort`
    (wake a blocked :meth:`_run`). An exception escaping :meth:`_run` is
    translated and becomes the stream's last item, as does the end of
    :meth:`_run` without a final item (a broken stream). The reader is
    started by :meth:`_start` through
    :func:`~discovery._background.start_thread`, so even a death that escapes
    :meth:`_run`'s guard is logged and reaches the consumer instead of
    leaving it waiting on a silent stream.

    Once :meth:`deliver_to` gave it a sink, :meth:`_emit` calls the sink in
    the emitting thread; before, items wait on a bounded queue, which
    :meth:`deliver_to` hands over first, in order.

    Args:
        backend: the backend's name, for errors.
        thread_name: the reader thread's name.
        errors: how the backend turns a client exception into a discovery error.
        capacity: how many items may wait in the queue before the reader blocks.
    """

    _JOIN_SECONDS: ClassVar[float] = 2.0

    def __init__(
        self,
        backend: str,
        thread_name: str,
        errors: ErrorTranslation,
        capacity: int = 1024,
    ) -> None:
        self._backend = backend
        self._errors = errors
        self._capacity = capacity
        # Guards the queue and the sink; waited on by next() (an item came),
        # a reader with a full queue (room, a sink, the close).
        self._cond = threading.Condition()
        self._items: collections.deque[Batch | Gap | DiscoveryError] = collections.deque()
        self._sink: Sink | None = None
        # Held while an item is handed to the sink, so they reach it one at a time, in order.
        self._handing = threading.Lock()
        self._refused = False
        self._closed = threading.Event()
        self._final: Gap | DiscoveryError | None = None
        self._ended = False
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None

    @abc.abstractmethod
    def _run(self) -> None:
        """Read the server until the stream ends; put items with :meth:`_emit`."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Wake the reader if it is blocked on the server. Never raises."""

    def _start(self) -> None:
        self._thread = start_thread(self._thread_name, self._guarded, self._died)

    def _died(self, exc: BaseException) -> None:
        if not self._closed.is_set():
            self._emit(BackendError(self._backend, f"watch stream reader died: {exc!r}"))

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:
            if not self._closed.is_set():
                self._emit(self._errors.translate(exc, "watch stream"))
            return
        if not self._ended and not self._closed.is_set():
            self._emit(BackendUnavailable(self._backend, "watch stream ended without a reason"))

    def _emit(self, item: Batch | Gap | DiscoveryError) -> bool:
        """Hand an item to the sink, or queue it (waiting while the queue is full).

        Returns:
            False if the stream was closed meanwhile, or the sink wants no
            more: the reader should stop.
        """
        with self._cond:
            while self._sink is None and len(self._items) >= self._capacity and not self._closed.is_set():
                self._cond.wait()
            if self._closed.is_set():
                return False
            self._ended = self._ended or not isinstance(item, Batch)
            sink = self._sink
            if sink is None:
                self._items.append(item)
                self._cond.notify_all()
                return True
        with self._handing:
            return self._hand(sink, item)

    def _hand(self, sink: Sink, item: Batch | Gap | DiscoveryError) -> bool:
        """Give one item to the sink; whether it wants more. Caller holds ``_handing``."""
        if self._refused or self._closed.is_set():
            return False
        try:
            wanted = sink(item)
        except Exception:  # the sink's bug must not kill the reader silently; the stream ends here
            _log.exception("the sink of %s raised; the stream stops", self._thread_name)
            wanted = False
        if not wanted or not isinstance(item, Batch):
            self._refused = True
            return False
        return True

    def deliver_to(self, sink: Sink) -> None:
        """Hand the queued items to ``sink`` in order, then every later one from the reader's thread.

        Implements the core's push protocol (``discovery._watch.PushStream``);
        called at most once, before :meth:`next` is ever called.
        """
        with self._handing:
            while True:
                with self._cond:
                    backlog = list(self._items)
                    self._items.clear()
                    if not backlog:
                        self._sink = sink
                        self._cond.notify_all()
                        return
                    self._cond.notify_all()
                for item in backlog:
                    if not self._hand(sink, item):
                        with self._cond:
                            self._sink = sink  # refused: the reader stops at its next item
                            self._cond.notify_all()
                        return

    def next(self, timeout: float) -> Batch | Gap | None:
        """Wait for the next item.

        Args:
            timeout: seconds to wait at most.

        Returns:
            A Batch; a Gap, after which the stream is finished (asking again
            returns it again); or None when nothing arrived within ``timeout``.

        Raises:
            BackendUnavailable: the stream broke (connection lost, server gone).
            BackendError: the server ended the stream for another reason.
            RegistryClosed: the stream (or the backend, which closes its streams) was closed.
        """
        if self._closed.is_set():
            raise RegistryClosed("change stream closed")
        final = self._final
        if isinstance(final, Gap):
            return final
        if final is not None:
            raise final
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
        if isinstance(item, Batch):
            return item
        self._final = item
        if isinstance(item, Gap):
            return item
        raise item

    def close(self) -> None:
        """Stop the reader and end its HTTP response. Idempotent; never raises."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        self._abort()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(self._JOIN_SECONDS)
