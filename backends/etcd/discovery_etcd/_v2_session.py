"""etcd v2 sessions: a group of TTL keys kept alive by ``refresh=true`` writes, each key on its own schedule.

v2 has no leases, so keeping N instances alive costs N refresh requests per
refresh interval (a third of the TTL). One thread issuing them in turn
manages about 1,700 a second on a 2-core machine, fewer under load: at
10,000 keys and a 10 s TTL a full round took longer than the interval, and
under load longer than the TTL, so live keys expired. Here each key is
refreshed when a third of the TTL has passed since its last confirmed write
or refresh (oldest first, so a late round still saves the keys nearest
expiry), and a large batch of due keys is spread over a few worker threads.
A key found gone at its refresh (it expired, say because the server stalled
longer than its TTL, or another client deleted it) is reported alone
(:meth:`~discovery.backend.Session.add_key_listener`), and the core puts
that one registration again: its siblings, still alive, are not touched.
Only when refreshes fail for a whole TTL (the server is unreachable) is the
session lost, as a lease would be: it deletes its remaining keys and reports
itself dead. A write that completes after the loss is undone by
its caller (:meth:`TtlSession.hold` refuses it), so no key of a lost session
outlives the loss unrefreshed. Deletes are conditioned on the modifiedIndex
the session last saw for the key, not on its value: python-etcd sends a
delete's conditions in the URL, and etcd resets a request line longer than
4 KB, so a value-conditioned delete of a large value could never succeed.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import etcd

from discovery.backend import Session
from discovery_etcd._errors import V2_ERRORS

if TYPE_CHECKING:
    from discovery_etcd._v2 import Etcd2Backend

__all__ = ["REFRESH_WORKERS", "TtlSession"]

_log = logging.getLogger(__name__)

#: Threads that refresh one session's keys when many are due at once; the
#: backend sizes its connection pools for them.
REFRESH_WORKERS = 4
# Fewer due keys than this are refreshed by the session's own thread.
_FAN_OUT_FROM = 64
# A conditional delete whose index moved is read and tried again this often.
_DELETE_ATTEMPTS = 3


@dataclass
class _Held:
    """One key of the session: the value it wrote, when its last confirmed write or refresh was sent, and the
    modifiedIndex that write or refresh gave it (deletes are conditioned on it)."""

    value: str
    sent: float
    index: int


class TtlSession(Session):
    """A group of v2 keys with one TTL, each refreshed a third of the TTL after its last write.

    Its :attr:`id` is a random token the core writes into each value as
    ``registrant``. A key found gone at its refresh (KeyNotFound) is released
    and reported to the key listeners. When refreshes fail for a whole TTL,
    the session is lost: it deletes its remaining keys, as an expired lease
    would, and reports itself not alive.

    Each key's refresh counts as one keep-alive request; one that fails or
    finds the key gone counts as failed.
    """

    counts_keepalives: ClassVar[bool] = True

    def __init__(self, backend: Etcd2Backend, ttl: float) -> None:
        super().__init__(ttl, backend)
        self._backend = backend
        self.ttl_seconds = max(1, math.ceil(ttl))
        self._interval = self.ttl_seconds / 3
        self._id = secrets.token_hex(8)
        self._held: dict[str, _Held] = {}
        self._held_lock = threading.Lock()
        self._ended = False
        self._stopped = threading.Event()
        self._closed = False
        self._workers: ThreadPoolExecutor | None = None
        self._thread = self._start_thread(f"etcd2-refresh-{self._id}", self._refresh_loop)

    @property
    def id(self) -> str:
        return self._id

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

        Returns:
            False when the session ended meanwhile: the caller must delete
            the key it wrote and report the session lost.
        """
        with self._held_lock:
            if self._ended:
                return False
            self._held[full] = _Held(value, sent, index)
            return True

    def release(self, full: str, value: str | None = None) -> None:
        """Forget a key (only while it still has ``value``, when given)."""
        with self._held_lock:
            held = self._held.get(full)
            if held is not None and (value is None or held.value == value):
                del self._held[full]

    def _due(self, now: float) -> list[tuple[str, str, float]]:
        """The keys whose refresh is due, ``(key, value, sent)``, the longest unrefreshed first."""
        with self._held_lock:
            due = [(full, h.value, h.sent) for full, h in self._held.items() if now - h.sent >= self._interval]
        due.sort(key=lambda item: item[2])
        return due

    def _refresh_loop(self) -> None:
        tick = min(self._interval / 4, 0.5)
        last_success = time.monotonic()
        while not self._stopped.wait(tick):
            due = self._due(time.monotonic())
            if not due:
                last_success = time.monotonic()
                continue
            outcomes = self._refresh_all(due)
            sent = [outcome for _, outcome in outcomes if outcome != "skipped"]
            self._count_keepalives(len(sent), sum(1 for o in sent if o == "expired" or isinstance(o, BaseException)))
            if self._stopped.is_set():
                return
            for full, outcome in outcomes:
                if outcome == "expired":
                    self._report_gone(full)
            failures = [outcome for _, outcome in outcomes if isinstance(outcome, BaseException)]
            if not failures:
                last_success = time.monotonic()
            elif time.monotonic() - last_success >= self.ttl_seconds:
                self._lost(f"refreshes failed for {self.ttl_seconds} s: {failures[-1]}")
                return

    def _refresh_all(self, due: list[tuple[str, str, float]]) -> list[tuple[str, object]]:
        if len(due) < _FAN_OUT_FROM:
            return [(item[0], self._refresh_one(item)) for item in due]
        if self._workers is None:
            self._workers = ThreadPoolExecutor(REFRESH_WORKERS, thread_name_prefix=f"etcd2-refresh-{self._id}")
        chunk = math.ceil(len(due) / REFRESH_WORKERS)
        parts = [due[start : start + chunk] for start in range(0, len(due), chunk)]
        try:
            results = self._workers.map(lambda part: [(item[0], self._refresh_one(item)) for item in part], parts)
            return [outcome for part in results for outcome in part]
        except (CancelledError, RuntimeError):  # stop() shut the workers down under us
            return []

    def _refresh_one(self, item: tuple[str, str, float]) -> object:
        """Refresh one key; ``"ok"``, ``"expired"``, ``"replaced"``, ``"skipped"`` or the exception."""
        full, value, _ = item
        if self._stopped.is_set():
            return "skipped"
        path = self._backend.keys.url_path(full)
        sent = time.monotonic()
        try:
            result = self._backend.call(lambda client: client.refresh(path, self.ttl_seconds, prevValue=value))
        except etcd.EtcdKeyNotFound:
            if self._value_of(full) != value:
                return "skipped"  # deleted or rewritten through this session meanwhile
            self.release(full, value)
            return "expired"
        except etcd.EtcdCompareFailed:
            # Replaced meanwhile: by this session's own put (then the value
            # differs and its write reset the schedule), or by a plain write
            # that took the key over.
            if self._value_of(full) == value:
                _log.warning("etcd2 session %s: key %s was overwritten by another writer", self._id, full)
                self.release(full, value)
            return "replaced"
        except Exception as exc:  # any failure counts; keys survive it up to the TTL
            return exc
        with self._held_lock:
            held = self._held.get(full)
            if held is not None and held.value == value:
                # A refresh moves modifiedIndex: the next delete is conditioned on it.
                held.index = max(held.index, int(result.modifiedIndex))
                if held.sent < sent:
                    held.sent = sent
        return "ok"

    def _value_of(self, full: str) -> str | None:
        with self._held_lock:
            held = self._held.get(full)
            return None if held is None else held.value

    def _report_gone(self, full: str) -> None:
        """One key expired (or was deleted by another client) while the others live on: let the core put it again."""
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
        _log.warning("etcd2 session %s lost: %s", self._id, why)
        self._stopped.set()
        self._delete_all(self._end())
        self.mark_lost()

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

    def stop(self) -> None:
        """Stop refreshing without telling the server (the keys expire after the TTL)."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self._backend.settings.timeout + 1)
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)

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
