"""The etcd v2 backend (``etcd2://``): TTL keys, compare-and-swap and streamed watches, through python-etcd.

v2 has no leases: a session is a group of keys with one TTL, each refreshed a
third of the TTL after its last write with a ``refresh=true`` write (invisible
to watchers, but each consumes an index of etcd's 1000-event history window),
by a pool of workers on connections of their own (see :mod:`._v2_session`). v2
has no owners either: a key belongs to the session whose id the core put in
the value's ``registrant`` field, and every conditional write is a
compare-and-swap on the value read. Revisions are v2 indexes; a listing is one
recursive read, its revision the ``X-Etcd-Index`` of that read, and a record's
mod_revision the index of its value's last write (a refresh moves
modifiedIndex too, which would make a resync report changes that never
happened: see :class:`ValueIndexes`). The watch is our own (python-etcd's
``eternal_watch`` ends on the first error): one ``stream=true`` watch that
etcd registers at its current index and feeds every later event, after long
polls ``?wait=true&recursive=true&waitIndex=N`` for the history between the
stream's position and that index (see :class:`V2WatchStream`), each event
one batch; ``EventIndexCleared`` (the window passed the stream's position)
becomes ``Gap("history-window")``. v2 tells an expiry (``expire``)
from a delete. etcd v2 hides every key with a segment starting with ``_`` from
listings and recursive watches, so such segments (the core's ``_definition``
records) are stored with a ``~`` before them (see :class:`V2KeySpace`). v2
keeps a directory once its last key is gone; an empty one is not a key, so a
write in its place removes it first, while a key in the way of a write (below
it or above it) is a :class:`~discovery.errors.NameConflict`. A server without
v2 (etcd 3.6, ``--enable-v2=false``) answers ``/v2/keys`` with a plain 404,
reported as :class:`~discovery.errors.Unsupported`. v2 answers a wrong
password and a role that does not grant the key alike (401, "Insufficient
credentials"): the refusal is a :class:`~discovery.errors.PermissionDenied`
naming the key once etcd has accepted the backend's credentials (on an
earlier request, or on a read of the registry's root), else an
:class:`~discovery.errors.AuthenticationFailed`. A role grants a directory
and everything below it with a pattern like ``/root/*``: listings and
watches therefore ask for the directory with a trailing ``/``, which the
pattern covers. etcd checks a watch's permission when it starts only, so
with credentials the watch's checker reads below the directory every
``timeout`` seconds: a watch whose grant is revoked ends with
PermissionDenied within about that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import etcd
import requests
from urllib3.util import Retry

from discovery._background import start_thread
from discovery.backend import (
    Backend,
    Batch,
    Change,
    ChangeKind,
    ChangeStream,
    Gap,
    Listing,
    Option,
    Record,
    Session,
    Target,
    key_held,
)
from discovery.capabilities import Capability
from discovery.errors import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    DiscoveryError,
    InvalidValue,
    NameConflict,
    PermissionDenied,
    RegistryClosed,
    SessionExpired,
    Unsupported,
)
from discovery_etcd._common import (
    OPTIONS,
    ConnectionSettings,
    Endpoints,
    KeySpace,
    QueuedStream,
    abort_response,
    fetch_version,
    make_http,
    wait_forever,
)
from discovery_etcd._errors import V2_DISABLED, V2_ERRORS, v2_disabled
from discovery_etcd._v2_session import TtlSession

__all__ = ["Etcd2Backend", "TtlSession", "V2KeySpace", "ValueIndexes", "owned_text", "stored_owner", "unowned"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
_DELETE_ACTIONS = frozenset({"delete", "compareAndDelete"})
_EXPIRE = "expire"
_INDEX_CLEARED = 401
_ATTEMPTS = 5
_MAX_REMEMBERED = 100_000
# Connections kept per endpoint for the callers' requests (registrations, the keeper, deletes).
_POOL_SIZE = 8
# What a watch's checker reads under the watched directory: a key that never
# exists (the backend stores segments starting with ``_`` escaped).
_PROBE = "_discovery-probe"
# Events a reopened stream replays from etcd's history, one long poll each, before it gives up for a resync:
# meanwhile etcd buffers the streamed watch's new events, 100 at most (etcd 3.4), and drops it past that.
_CATCH_UP_EVENTS = 32
# A streamed watch that has not brought, after this long waiting on it, an
# event its guard saw is taken for dropped by etcd (see V2WatchStream._guard).
_DROP_SECONDS = 1.0
# While a stream delivers, its guard waits from its position this often at most,
# and at once when the stream has been quiet this long.
_GUARD_SECONDS = 0.25
_GUARD_QUIET_SECONDS = 0.05
# etcd resets a request whose request line ("DELETE <path>?<query> HTTP/1.1",
# CRLF included) passes 4096 bytes (measured on 3.4: a path of 4081 bytes
# passes in a GET, 4078 in a DELETE). Room is kept for the longest query this
# backend adds (``?wait=true&recursive=true&waitIndex=<20 digits>``, 58 bytes),
# and for the name a watch's checker reads below a directory (``/_discovery-probe``).
_REQUEST_LINE_BYTES = 4096
_QUERY_ROOM = 96
_KEYS_ENDPOINT = "/v2/keys"
# A segment needing the escape: ``_`` hides a v2 key, and ``~`` followed by
# ``_`` is how an escaped one looks, so both get one ``~`` more.
_ESCAPE = re.compile(r"~*_")
_ESCAPED = re.compile(r"~+_")


class V2KeySpace(KeySpace):
    """Keys under the root, with a segment of the form ``~*_...`` stored with one ``~`` more (v2 hides ``_`` keys).

    ``_definition`` is stored as ``~_definition``, and an id that itself
    looks escaped, ``~_definition``, as ``~~_definition``, so decoding (one
    ``~`` less on a segment of the form ``~+_...``) gives every name back.
    Other segments, ``~x`` and ``~~y`` included, are stored as they are,
    as they were before ids of the form ``~_...`` were told apart.
    """

    def full(self, key: str) -> str:
        return super().full("/".join("~" + part if _ESCAPE.match(part) else part for part in key.split("/")))

    def relative(self, full: str) -> str | None:
        key = super().relative(full)
        if key is None:
            return None
        return "/".join(part[1:] if _ESCAPED.match(part) else part for part in key.split("/"))

    def directory(self, prefix: str) -> str:
        """The v2 directory that holds every key under ``prefix`` (``""`` or ending in ``/``)."""
        return self.full(prefix).rstrip("/") or "/"

    @staticmethod
    def url_path(full: str) -> str:
        """A full v2 key as it goes in the URL (python-etcd does not quote keys)."""
        return quote(full, safe="/~")

    def directory_url(self, directory: str) -> str:
        """A directory as it goes in the URL of a listing or a watch: with a trailing ``/``.

        etcd v2 checks a role against the path as sent, and the pattern
        ``/root/*`` grants ``/root/`` and below, not ``/root``.
        """
        return self.url_path(directory.rstrip("/") + "/")


def _unreachable(exc: BaseException) -> bool:
    """Whether python-etcd could not reach the endpoint (a watch that timed out did reach it)."""
    return isinstance(exc, etcd.EtcdConnectionFailed) and not isinstance(exc, etcd.EtcdWatchTimedOut)


def _no_answer(exc: BaseException) -> bool:
    """Whether a request got no answer from the endpoint (not reached, or no headers in time)."""
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


_OWNER_FIELD = re.compile(r'\{"registrant":"([0-9a-f]*)"')


def owned_text(owner: str, text: str) -> str:
    """The stored form of a session's value: the JSON object ``text`` with ``"registrant": owner`` as first field."""
    rest = text[1:]
    separator = "" if rest.lstrip().startswith("}") else ","
    return f'{{"registrant":"{owner}"{separator}{rest}'


def stored_owner(stored: str | None) -> str | None:
    """The session id a stored value names as its owner; None for a value no session of ours wrote."""
    found = _OWNER_FIELD.match(stored or "")
    return found.group(1) if found else None


def unowned(stored: str) -> str:
    """The value as the caller wrote it: a stored value without the owner field :func:`owned_text` added."""
    found = _OWNER_FIELD.match(stored)
    if found is None:
        return stored
    rest = stored[found.end() :]
    return "{" + (rest[1:] if rest.startswith(",") else rest)


def _object_text(value: bytes) -> str:
    """A session's value as text; it must be a JSON object's, to carry the owner field.

    Raises:
        InvalidValue: the value is not UTF-8, or not a JSON object's text.
    """
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValue("value", value, "a value bound to a session must be UTF-8 (it is stored as text)") from None
    if not (text.startswith("{") and text.rstrip().endswith("}")):
        raise InvalidValue("value", value, "a value bound to a session must be a JSON object (it carries its owner)")
    return text


class ValueIndexes:
    """Per key, the index at which its current value was written, as far as this backend saw.

    A ``refresh=true`` write moves a v2 node's modifiedIndex without a watch
    event, so a listing taken after refreshes would show every live instance
    as modified, and a resync would report changes that never happened. The
    backend reports instead, for a key whose createdIndex and value are
    unchanged since it last saw them written or listed, the index it saw
    then. Values written, listed and watched through this backend feed it;
    deletes and listings prune it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, str, int]] = {}

    def written(self, full: str, created: int, value: str, index: int) -> None:
        """A write of ``value`` at ``index`` (from a put or a watch event)."""
        with self._lock:
            entry = self._seen.get(full)
            if entry is None or entry[2] < index:
                self._seen[full] = (created, value, index)

    def deleted(self, full: str, index: int) -> None:
        """The key was deleted at ``index``."""
        with self._lock:
            entry = self._seen.get(full)
            if entry is not None and entry[2] < index:
                del self._seen[full]

    def listed(self, directory: str, nodes: list[tuple[str, int, str, int]]) -> list[int]:
        """The modification index to report for each listed ``(key, created, value, modifiedIndex)``.

        Keys under ``directory`` that the listing no longer holds are forgotten.
        """
        reported = []
        with self._lock:
            present = {full for full, _, _, _ in nodes}
            below = directory.rstrip("/") + "/"
            for full in [full for full in self._seen if full.startswith(below) and full not in present]:
                del self._seen[full]
            for full, created, value, modified in nodes:
                reported.append(self._stable(full, created, value, modified))
        return reported

    def stable(self, full: str, created: int, value: str, modified: int) -> int:
        """The modification index to report for one key read now."""
        with self._lock:
            return self._stable(full, created, value, modified)

    def _stable(self, full: str, created: int, value: str, modified: int) -> int:
        entry = self._seen.get(full)
        if entry is not None and entry[0] == created and entry[1] == value:
            return min(entry[2], modified)
        if len(self._seen) >= _MAX_REMEMBERED:
            # Forgetting costs at most one spurious update per key in a later resync.
            self._seen.clear()
        self._seen[full] = (created, value, modified)
        return modified


class V2WatchStream(QueuedStream):
    """The changes under a v2 directory: one streamed watch from the moment it opens, after the history before it.

    A long poll ends with its one event, and one that ends on a timer must
    be made again from an index it can prove: one request per event (about
    900 events a second), and an idle poll that started thousands of
    indexes ago (other keys' writes and every TTL refresh take an index)
    resumed outside etcd's 1000-event window, so an idle watcher re-listed
    everything every few seconds. Instead the stream opens one
    ``stream=true`` watch without a ``waitIndex``: etcd registers it at its
    current index, ``X-Etcd-Index`` in the headers it flushes at once, and
    sends every later event under the directory on that connection, in
    order, as it commits it. The events between the stream's position and
    that index come first, from etcd's history, by plain long polls from the
    position: each returns the first event at or after its ``waitIndex``
    (``EventIndexCleared`` when the window has passed the position: a
    ``Gap("history-window")``); an event after the streamed watch's index
    ends the catch-up, as the streamed watch carries it too. (A streamed
    watch that starts in the history would send that one event and nothing
    more.) Then the streamed watch is read for as long as it lasts, its
    position current however long it stays quiet. The catch-up replays 32
    events at most (:data:`_CATCH_UP_EVENTS`): while it runs, etcd buffers
    the streamed watch's new events, and on a busy server a long catch-up
    overflowed that buffer, so the streamed watch was dropped, opened again
    further behind, and the stream fell seconds behind the writes; past
    that it reports ``Gap("catch-up")`` and the watch re-lists instead.

    etcd 3.4 keeps 100 events per watcher and drops a streamed watcher whose
    buffer is full when the next comes (the reader fell behind, or a sweep
    of expiries outpaced the connection), without ending its answer: the
    streamed watch goes quiet for good. A guard thread finds it
    (:meth:`_guard`), and the stream opens again from its position, to catch
    up from the history or report the gap.

    A quiet connection cannot tell a stopped member from an idle directory,
    and etcd v2 checks the permission of a watch only when it starts: so,
    as on the v3 API, a checker thread asks the member for a key under the
    directory (which does not exist) whenever the stream was quiet for
    ``2 x timeout``, and in every round of ``timeout`` seconds when the
    backend has credentials; no answer ends the stream with
    BackendUnavailable, a 401 with PermissionDenied.

    Opening one contacts no server (the reader does), so the stream is
    :attr:`confirmed` only once a streamed watch's headers came back with
    200: etcd flushes them as soon as it registered the watch. A stream on a
    dead server thus fails (connection refused, or no headers within the
    timeout) without ever being confirmed, and its thread ends with it.

    Args:
        backend: the backend.
        directory: the watched v2 directory.
        prefix: the relative prefix; events for other keys are dropped.
        wait_index: the first index to deliver.
    """

    def __init__(self, backend: Etcd2Backend, directory: str, prefix: str, wait_index: int) -> None:
        super().__init__(backend.name, f"etcd2-watch-{directory}", V2_ERRORS)
        self._owner = backend
        self._directory = directory
        self._prefix = prefix
        self._index = wait_index
        self._url = f"{_KEYS_ENDPOINT}{backend.keys.directory_url(directory)}"
        self._http = make_http(backend.settings)
        if backend.settings.user:
            self._http.auth = (backend.settings.user, backend.settings.password)
        self._live: requests.Response | None = None
        self._poll_response: requests.Response | None = None
        self._endpoint = ""
        self._confirmed = False
        self._heard = time.monotonic()
        self._reader_done = threading.Event()
        self._checker: threading.Thread | None = None
        self._guard_response: requests.Response | None = None
        self._guard_http = make_http(backend.settings)
        self._guard_http.auth = self._http.auth
        # The streamed watch the reader waits on, and since when; the one the guard found dropped.
        self._following: requests.Response | None = None
        self._idle: tuple[requests.Response, float] | None = None
        self._dropped: requests.Response | None = None
        self.drops = 0
        """Streamed watches etcd dropped without a word (its buffer overflowed), found by the guard and opened again."""
        self.requests = 0
        """Watch requests of the reader: a streamed watch per (re)opening, and a long poll per event read from
        the history before it (the guard's and the checker's requests are not counted)."""
        self._start()

    @property
    def confirmed(self) -> bool:
        """Whether a streamed watch of this stream was accepted by etcd (its headers arrived with 200)."""
        return self._confirmed

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                opened = self._open()
                if opened is None:
                    return
                live, started_at = opened
                self._following = None
                if self._index <= started_at and not self._catch_up(started_at):
                    return
                self._index = max(self._index, started_at + 1)
                if not self._follow(live):
                    return
                # etcd ended the streamed watch after its buffer overflowed: open it again from the position.
        finally:
            self._reader_done.set()

    def _request(self, *, stream: bool, wait_index: int | None) -> requests.Response:
        """A watch request on the first endpoint that answers (etcd flushes a watch's headers at once)."""
        params = {"wait": "true", "recursive": "true"}
        if stream:
            params["stream"] = "true"
        if wait_index is not None:
            params["waitIndex"] = str(wait_index)
        self.requests += 1

        def attempt(endpoint: str) -> requests.Response:
            return self._http.get(
                endpoint + self._url, params=params, stream=True, timeout=self._owner.settings.timeout
            )

        return self._owner.endpoints.first_answer(attempt, _no_answer)

    def _open(self) -> tuple[requests.Response, int] | None:
        """Open the streamed watch; it and the index etcd registered it at, or None when the stream ended."""
        response = self._live = self._request(stream=True, wait_index=None)
        if self._closed.is_set():
            abort_response(response)
            return None
        if response.status_code != 200:
            self._refusal(response)
            return None
        self._confirmed = True
        self._owner.accepted()
        self._endpoint = response.url.split(_KEYS_ENDPOINT, 1)[0]
        self._heard = time.monotonic()
        # A quiet watch is not a dead one: the checker tells them apart.
        wait_forever(response)
        if self._checker is None:
            self._checker = start_thread(f"etcd2-check-{self._directory}", self._check)
            start_thread(f"etcd2-guard-{self._directory}", self._guard)
        started_at = response.headers.get("X-Etcd-Index")
        if started_at is None:
            raise BackendError(self._backend, "etcd sent a watch without its X-Etcd-Index")
        return response, int(started_at)

    def _catch_up(self, started_at: int) -> bool:
        """Deliver the events from the position up to ``started_at`` from etcd's history; False if the stream ended.

        At most :data:`_CATCH_UP_EVENTS` of them: a long history is a
        ``Gap("catch-up")`` instead (see the class's docstring).
        """
        replayed = 0
        while self._index <= started_at:
            if replayed >= _CATCH_UP_EVENTS:
                self._emit(Gap("catch-up"))
                return False
            replayed += 1
            response = self._poll_response = self._request(stream=False, wait_index=self._index)
            if self._closed.is_set():
                abort_response(response)
                return False
            if response.status_code != 200:
                self._refusal(response)
                return False
            # Nothing under the directory since the position: the poll waits
            # for the next event, which the streamed watch brings as well.
            wait_forever(response)
            document = self._document(response.content, response)
            self._heard = time.monotonic()
            node = document.get("node")
            if isinstance(node, dict) and int(node.get("modifiedIndex", 0)) > started_at:
                return True
            item = self._item(document)
            if item is not None and not self._emit(item):
                return False
            if isinstance(item, Gap):
                return False
        return True

    def _follow(self, live: requests.Response) -> bool:
        """Deliver the streamed watch's events until it ends to be opened again (True) or the stream ends (False).

        The streamed watch is opened again when the guard found etcd had
        dropped it (:meth:`_guard`), or etcd ended it.

        Raises:
            BackendUnavailable: etcd ended the streamed watch before it sent anything.
            requests.RequestException: the connection broke.
        """
        received = False
        lines = live.iter_lines(chunk_size=None)
        self._following = live
        while True:
            self._idle = (live, time.monotonic())
            try:
                line = next(lines, None)
            except Exception:  # a broken connection; or aborted under the read, by the guard or close()
                if self._dropped is live and not self._closed.is_set():
                    return True  # aborted by the guard: open it again from the position
                raise
            finally:
                self._idle = None
            if line is None:
                break  # etcd ended it
            if not line.strip():
                continue
            received = True
            self._heard = time.monotonic()
            if self._closed.is_set():
                return False
            document = self._document(line, live)
            if "errorCode" in document:
                self._refusal(live, document)
                return False
            node = document.get("node")
            if isinstance(node, dict) and int(node.get("modifiedIndex", 0)) < self._index:
                continue  # delivered already (a member behind the one before)
            item = self._item(document)
            if item is not None and not self._emit(item):
                return False
            if isinstance(item, Gap):
                return False
        if self._dropped is live:
            return not self._closed.is_set()
        if not received and not self._closed.is_set():
            raise BackendUnavailable(self._backend, "etcd ended the streamed watch without an event")
        return not self._closed.is_set()

    def _document(self, body: bytes, response: requests.Response) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise BackendError(self._backend, f"unexpected watch answer {response.status_code} {body[:200]!r}")
        return document

    def _refusal(self, response: requests.Response, document: dict[str, Any] | None = None) -> None:
        """End the stream with what etcd's error answer means: Unsupported, a history gap, a refused permission.

        Raises:
            etcd.EtcdException: any other error etcd answered with (translated by the reader's guard).
            BackendError: an answer that is no etcd error.
        """
        if document is None:
            body = response.content
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if response.status_code == 404 and not isinstance(parsed, dict):
                self._emit(Unsupported(f"the v2 API ({V2_DISABLED})", self._backend))
                return
            document = self._document(body, response)
        if "errorCode" not in document:
            raise BackendError(self._backend, f"unexpected watch answer {response.status_code} {document!r:.200}")
        if document["errorCode"] == _INDEX_CLEARED:
            self._emit(Gap("history-window"))
            return
        try:
            etcd.EtcdError.handle({**document, "status": response.status_code})
        except etcd.EtcdInsufficientPermissions as exc:
            self._emit(self._owner.refused("watch", self._prefix.rstrip("/"), exc))

    def _item(self, event: Mapping[str, Any]) -> Batch | Gap | None:
        """What one v2 event means for the stream; advances the index past it."""
        node = event.get("node")
        if not isinstance(node, dict):
            raise BackendError(self._backend, f"watch event without a node: {event!r:.200}")
        action = str(event.get("action"))
        index = int(node.get("modifiedIndex", 0))
        self._index = max(self._index, index + 1)
        if node.get("dir"):
            # A directory removed takes its keys without an event for each.
            return Gap("directory-removed") if action in _DELETE_ACTIONS or action == _EXPIRE else None
        key = self._owner.keys.relative(str(node.get("key", "")))
        if key is None or not key.startswith(self._prefix):
            return None
        full = str(node["key"])
        if action in _PUT_ACTIONS:
            value = str(node.get("value", ""))
            created = int(node.get("createdIndex", index))
            self._owner.indexes.written(full, created, value, index)
            change = Change(ChangeKind.PUT, key, unowned(value).encode(), created, index)
        elif action in _DELETE_ACTIONS or action == _EXPIRE:
            self._owner.indexes.deleted(full, index)
            change = Change(ChangeKind.DELETE, key, None, 0, index, action == _EXPIRE)
        else:
            raise BackendError(self._backend, f"unknown v2 watch action {action!r}")
        return Batch(index, (change,))

    # -- the checker

    def _check(self) -> None:
        """End the stream if its member stops answering, or (with credentials) if the grant to read is revoked."""
        timeout = self._owner.settings.timeout
        every = max(2 * timeout, 2.0)
        authenticated = bool(self._owner.settings.user)
        while not self._closed.wait(every / 2) and not self._reader_done.is_set():
            if not authenticated and time.monotonic() - self._heard < every:
                continue
            ending = self._probe(timeout)
            if ending is None:
                self._heard = time.monotonic()
                continue
            if not self._closed.is_set() and not self._reader_done.is_set():
                self._emit(ending)
                self._abort_responses()
            return

    def _probe(self, timeout: float) -> DiscoveryError | None:
        """Ask the stream's member for a key under the directory; the error to end the stream with, if any.

        The key does not exist (v2 hides keys starting with ``_``, and the
        backend escapes such names), so the answer is a small 404 after the
        same permission check a watch of the directory passes.
        """
        url = f"{self._endpoint}{self._url}{_PROBE}"
        try:
            answer = self._http.get(url, timeout=timeout)
        except Exception as exc:  # no answer; or close() closed the session under the request
            if self._closed.is_set():
                return None
            return BackendUnavailable(self._backend, f"{self._endpoint} stopped answering: {exc}", exc)
        if answer.status_code != 401:
            return None
        try:
            document = answer.json()
            etcd.EtcdError.handle({**document, "status": answer.status_code})
        except etcd.EtcdInsufficientPermissions as exc:
            return self._owner.refused("watch", self._prefix.rstrip("/"), exc)
        except Exception as exc:  # an unexpected 401 answer: still a refusal
            return BackendError(self._backend, f"watch {self._prefix!r}: refused: {exc!r}", exc)
        return None

    # -- the guard

    def _guard(self) -> None:
        """Find a streamed watch etcd dropped without a word, and have the reader open it again from its position.

        etcd 3.4 removes a streamed watcher whose buffer of 100 events is full
        when another comes (the reader fell behind, or a burst of expiries
        outpaced the connection) but never ends its answer: the stream just
        goes quiet. So a plain long poll waits from the stream's position,
        parked (it keeps that position however many other keys' writes
        follow), and returns the first event at or after it; the streamed
        watch must bring that event too. If instead the reader waits on it
        for :data:`_DROP_SECONDS` without it, the streamed watch is aborted
        and opened again from the position (the history has the events since,
        or the window passed: a Gap). Then the guard waits again from the
        position, at once when the stream is quiet, at most every
        :data:`_GUARD_SECONDS` while it delivers. A position already outside
        the window when the guard would wait from it cannot be vouched for:
        the streamed watch is opened again from it as well, to a Gap.
        """
        timeout = self._owner.settings.timeout
        armed: tuple[requests.Response | None, float] = (None, -math.inf)
        while not self._closed.is_set() and not self._reader_done.is_set():
            following = self._following
            if following is None or not (
                self._quiet(_GUARD_QUIET_SECONDS)
                or (armed[0] is following and time.monotonic() - armed[1] >= _GUARD_SECONDS)
            ):
                # Not reading a streamed watch; or reading one that delivers, checked a moment ago (or never:
                # the first check waits until it is quiet, so the position is the stream's latest).
                self._closed.wait(0.05)
                continue
            armed = (following, time.monotonic())
            position = self._index
            try:
                answer = self._guard_response = self._guard_http.get(
                    self._endpoint + self._url,
                    params={"wait": "true", "recursive": "true", "waitIndex": str(position)},
                    stream=True,
                    timeout=timeout,
                )
                if answer.status_code == 200:
                    wait_forever(answer)
                document = json.loads(answer.content)
            except Exception as exc:  # unreachable, or aborted by close() under the read: the others tell
                _log.debug("etcd2 watch %s: guard poll failed: %r", self._directory, exc)
                if self._closed.wait(1.0):
                    return
                continue
            if not isinstance(document, dict):
                continue
            if "errorCode" in document:
                if document["errorCode"] != _INDEX_CLEARED:
                    return  # refused: the checker ends the stream
                if self._still_at(position):
                    self._drop("its position left the history window before it could be checked")
                continue
            node = document.get("node")
            index = int(node.get("modifiedIndex", 0)) if isinstance(node, dict) else 0
            self._await_delivery(index)

    def _quiet(self, seconds: float, since: float = -math.inf) -> bool:
        """Whether the reader has been waiting on the streamed watch for ``seconds``, counted from ``since`` at most."""
        idle = self._idle
        return idle is not None and time.monotonic() - max(idle[1], since) >= seconds

    def _still_at(self, position: int) -> bool:
        """Whether the stream stays at ``position`` while the reader waits on the streamed watch for a while."""
        seen = time.monotonic()
        while self._index == position and not self._closed.is_set() and not self._reader_done.is_set():
            if self._quiet(_DROP_SECONDS, since=seen):
                return True
            self._closed.wait(0.05)
        return False

    def _await_delivery(self, index: int) -> None:
        """Wait until the stream delivered ``index``; drop the streamed watch if the reader waits on it meanwhile."""
        seen = time.monotonic()
        while self._index <= index and not self._closed.is_set() and not self._reader_done.is_set():
            if self._quiet(_DROP_SECONDS, since=seen):
                self._drop(f"a long poll got the event at {index}, it did not")
                return
            self._closed.wait(0.05)

    def _drop(self, why: str) -> None:
        """Abort the streamed watch the reader waits on; it opens another from its position."""
        idle = self._idle
        if idle is None or self._closed.is_set():
            return
        live = idle[0]
        _log.warning(
            "etcd2 watch %s: the streamed watch went quiet (%s): etcd dropped it, or its member stalled; "
            "opening it again from the position",
            self._directory,
            why,
        )
        self.drops += 1
        self._dropped = live
        abort_response(live)

    def _abort_responses(self) -> None:
        abort_response(self._live)
        abort_response(self._poll_response)
        abort_response(self._guard_response)

    def _abort(self) -> None:
        self._abort_responses()
        self._http.close()
        self._guard_http.close()


class Etcd2Backend(Backend):
    """etcd through its v2 API: ``etcd2://host:2379[,host:2379...]/root?timeout=5``."""

    name: ClassVar[str] = "etcd2"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.EXPIRY_CAUSE,
            Capability.INTERMEDIATE_VALUES,
            Capability.ATOMIC_SNAPSHOT,
            Capability.RESUME_FROM_REVISION,
        }
    )
    options: ClassVar[Mapping[str, Option]] = OPTIONS
    default_port: ClassVar[int] = 2379
    # v2 TTLs are whole seconds.
    min_ttl: ClassVar[float] = 1.0
    # etcd parses a write's form body up to 10 MiB (Go's limit: "http: POST
    # too large" beyond 10,485,760 bytes, measured), and the value goes in it
    # percent-encoded, up to three bytes each; 3 MiB leaves 1 MiB for the
    # other fields. Every condition on a value travels as an index, so the
    # value is sent once per request.
    max_value_bytes: ClassVar[int] = 3 << 20
    # As :meth:`key_size` counts: the URL path, ``/v2/keys`` included.
    max_key_bytes: ClassVar[int] = _REQUEST_LINE_BYTES - len("DELETE ") - len(" HTTP/1.1\r\n") - _QUERY_ROOM

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.settings = ConnectionSettings.of(self)
        self.keys = V2KeySpace(target.root)
        settings = self.settings
        cert = (settings.cert, settings.key) if settings.key else (settings.cert or None)
        self.clients = [
            etcd.Client(
                host=host,
                port=port,
                protocol=settings.protocol,
                read_timeout=settings.timeout,
                cert=cert,
                ca_cert=settings.ca or None,
                username=settings.user or None,
                password=settings.password or None,
                allow_reconnect=False,
            )
            for host, port in settings.hosts
        ]
        for client in self.clients:
            # Fail over to the next endpoint at once instead of urllib3's three quiet retries.
            client.http.connection_pool_kw["retries"] = Retry(
                total=None, connect=0, read=0, other=0, status=0, redirect=5
            )
            # Room for the callers' requests at once (sessions refresh on connections of their own).
            client.http.connection_pool_kw["maxsize"] = _POOL_SIZE
        self.endpoints = Endpoints(settings.endpoints)
        self._clients = dict(zip(settings.endpoints, self.clients, strict=True))
        self._http = make_http(settings)
        self.indexes = ValueIndexes()
        self._sessions: weakref.WeakSet[TtlSession] = weakref.WeakSet()
        self._streams: weakref.WeakSet[V2WatchStream] = weakref.WeakSet()
        self._closed = False
        # Whether etcd answered a request made with the credentials: then a 401 is a missing grant.
        self._accepted = False

    def key_size(self, key: str) -> int:
        """The length of the URL path python-etcd sends for ``key`` (``/v2/keys``, root, escapes, percent-encoding)."""
        return len(_KEYS_ENDPOINT + self.keys.url_path(self.keys.full(key)))

    def call(self, operation: Callable[[etcd.Client], _T]) -> _T:
        """Run ``operation`` on the client of the first endpoint that can be reached.

        Raises:
            etcd.EtcdException: etcd answered with an error, or no endpoint could be reached.
        """
        result = self.endpoints.first_answer(lambda url: operation(self._clients[url]), _unreachable)
        self._accepted = True
        return result

    def accepted(self) -> None:
        """etcd answered a request made with the backend's credentials: they are right."""
        self._accepted = True

    def refused(self, action: str, key: str, exc: BaseException) -> AuthenticationFailed:
        """The error for a request etcd refused with 401: PermissionDenied once the credentials are known right.

        v2 refuses a wrong password and a missing grant alike. Credentials
        that etcd accepted on an earlier request, or now on a read of the
        registry's root, are right, so the grant is missing.

        Args:
            action: the operation, for the message.
            key: the key, or the prefix without its trailing ``/``, relative to the root.
            exc: python-etcd's ``EtcdInsufficientPermissions``.
        """
        if self._credentials_right():
            return PermissionDenied(self.name, key, f"{action} {key!r}: the user's roles do not grant it ({exc})", exc)
        who = f"the credentials of {self.settings.user!r}" if self.settings.user else "a request without credentials"
        reason = f"etcd refused {who}, or they may not read the registry's root to tell"
        return AuthenticationFailed(self.name, f"{action} {key!r}: {reason} ({exc})", exc)

    def _credentials_right(self) -> bool:
        if not self.settings.user:
            return False
        if self._accepted:
            return True
        root = self.keys.directory_url(self.keys.directory(""))
        try:
            self.call(lambda client: client.read(root))
        except etcd.EtcdKeyNotFound as exc:
            # Not there yet, but the read passed the permission check.
            return not v2_disabled(exc)
        except Exception as exc:  # refused as well, or unreachable: not proven
            _log.debug("etcd2: reading the root to check the credentials failed: %s", exc)
            return False
        return True

    @contextlib.contextmanager
    def _boundary(self, action: str, key: str) -> Iterator[None]:
        """``V2_ERRORS.boundary(action)`` for an operation on ``key``: a refused permission names the key."""
        try:
            with V2_ERRORS.boundary(action):
                yield
        except AuthenticationFailed as exc:
            if not isinstance(exc.orig, etcd.EtcdInsufficientPermissions):
                raise
            raise self.refused(action, key, exc.orig) from exc.orig

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self.name} backend is closed")

    def _session(self, session: Session) -> TtlSession:
        return self._own_session(session, TtlSession)

    def current_index(self, directory: str) -> int:
        """The ``X-Etcd-Index`` of a read of ``directory`` (which need not exist, nor lie below a directory).

        Raises:
            etcd.EtcdException: the read failed.
        """
        try:
            return int(self.call(lambda client: client.read(self.keys.directory_url(directory))).etcd_index)
        except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir) as exc:
            if v2_disabled(exc):
                raise
            return int(exc.payload["index"])

    def list(self, prefix: str) -> Listing:
        """Read every key under ``prefix`` in one recursive quorum read.

        Returns:
            The records; the revision is the ``X-Etcd-Index`` of the read.

        Raises:
            Unsupported: the server does not serve the v2 API.
            BackendUnavailable: no endpoint could be reached.
            AuthenticationFailed: etcd refused the credentials.
            PermissionDenied: the user's roles do not grant reading the prefix (credentials known right).
            BackendError: the read failed.
        """
        self._check_open()
        directory = self.keys.directory(prefix)
        path = self.keys.directory_url(directory)
        with self._boundary("list", prefix.rstrip("/")):
            try:
                result = self.call(lambda client: client.read(path, recursive=True, quorum=True))
            except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir) as exc:
                # Nothing there, or a key where the prefix has a directory
                # ("Not a directory"): either way nothing lies under it.
                if v2_disabled(exc):
                    raise
                return Listing(int(exc.payload["index"]), ())
        nodes: list[tuple[str, int, str, int]] = []
        keys: list[str] = []
        for node in result.leaves:
            if node.dir or not node.key:
                continue
            key = self.keys.relative(node.key)
            if key is not None and key.startswith(prefix):
                keys.append(key)
                nodes.append((node.key, int(node.createdIndex), node.value or "", int(node.modifiedIndex)))
        modified = self.indexes.listed(directory, nodes)
        records = tuple(
            Record(key, unowned(value).encode(), created, mod)
            for key, (_, created, value, _), mod in zip(keys, nodes, modified, strict=True)
        )
        return Listing(int(result.etcd_index), records)

    def watch(self, prefix: str, after_revision: int | None) -> ChangeStream:
        """Open a long-poll watch under ``prefix``.

        Args:
            prefix: as for :meth:`list`.
            after_revision: deliver changes after this index (the first item
                is ``Gap("history-window")`` if etcd's 1000-event window has
                passed it); None: after the current ``X-Etcd-Index``, read
                before this returns, so the stream covers everything from now.

        Raises:
            Unsupported: the server does not serve the v2 API.
            BackendUnavailable: no endpoint could be reached.
            PermissionDenied: the user's roles do not grant reading the prefix (credentials known right).
            BackendError: the index could not be read.
        """
        self._check_open()
        directory = self.keys.directory(prefix)
        if after_revision is None:
            with self._boundary("open watch", prefix.rstrip("/")):
                after_revision = self.current_index(directory)
        stream = V2WatchStream(self, directory, prefix, after_revision + 1)
        self._streams.add(stream)
        return stream

    def open_session(self, ttl: float) -> Session:
        """Start a group of keys with a TTL of ``ceil(ttl)`` seconds, refreshed every third of it.

        Nothing is written until a key is put under it.
        """
        self._check_open()
        session = TtlSession(self, ttl)
        self._sessions.add(session)
        return session

    def put(self, key: str, value: bytes, session: Session | None) -> int:
        """Write a key; with a session, as a TTL key created if absent or replaced if this session's.

        Replacing a key of this session that already holds ``value`` writes
        nothing (a retried write whose answer was lost). An empty directory
        where the key goes (v2 keeps one after its last key is gone) is
        removed first.

        Returns:
            The modifiedIndex of the write.

        Raises:
            AlreadyRegistered: with a session, the key exists and its value names another owner.
            NameConflict: a key exists below ``key``, or ``key`` lies below a key.
            SessionExpired: the session was lost.
            InvalidValue: with a session, the value is not a JSON object's UTF-8 text (it carries the owner).
            Unsupported: the server does not serve the v2 API.
            BackendUnavailable: no endpoint could be reached.
            PermissionDenied: the user's roles do not grant writing the key; nothing was written.
            BackendError: the write failed.
        """
        self._check_open()
        full = self.keys.full(key)
        path = self.keys.url_path(full)
        with self._boundary("put", key):
            if session is None:
                # Sent as bytes: etcd stores them as they are; v2 answers in
                # JSON, so bytes that are not UTF-8 read back replaced (U+FFFD).
                result = self._put_persistent(key, full, value)
                return self._written(full, value.decode("utf-8", "replace"), result)
            owner = self._session(session)
            text = owned_text(owner.id, _object_text(value))
            ttl = owner.ttl_seconds
            for _ in range(_ATTEMPTS):
                if not owner.alive:
                    raise SessionExpired(self.name, f"session {owner.id} was lost")
                sent = time.monotonic()
                try:
                    result = self.call(lambda client: client.write(path, text, ttl=ttl, prevExist=False))
                except etcd.EtcdNotDir as exc:
                    raise self._conflict_above(key, exc) from None
                except etcd.EtcdAlreadyExist:
                    try:
                        current = self.call(lambda client: client.read(path, quorum=True))
                    except etcd.EtcdKeyNotFound:
                        continue
                    if current.dir:
                        self._clear_directory(key, full)
                        continue
                    if stored_owner(current.value) != owner.id:
                        raise key_held(key) from None
                    if current.value == text:
                        # Already ours with this value (a retried write whose
                        # answer was lost): writing again would be a spurious
                        # update. When its TTL was set is unknown: refresh it soon.
                        self._hold(owner, full, text, 0.0, int(current.modifiedIndex))
                        return self.indexes.stable(full, current.createdIndex, text, current.modifiedIndex)
                    try:
                        result = self._swap(path, text, ttl, int(current.modifiedIndex))
                    except (etcd.EtcdCompareFailed, etcd.EtcdKeyNotFound, etcd.EtcdNotFile):
                        continue
                self._hold(owner, full, text, sent, int(result.modifiedIndex))
                return self._written(full, text, result)
            raise BackendError(self.name, f"put {key!r}: the key kept changing during {_ATTEMPTS} attempts")

    def _hold(self, owner: TtlSession, full: str, text: str, sent: float, index: int) -> None:
        """Give the key just written (at ``index``) to its session; undo the write if the session was lost meanwhile.

        Raises:
            SessionExpired: the session ended while the write was under way.
        """
        if owner.hold(full, text, sent, index):
            return
        with contextlib.suppress(etcd.EtcdKeyNotFound, etcd.EtcdCompareFailed):
            owner.delete_if(full, text, index)
        raise SessionExpired(self.name, f"session {owner.id} was lost during the write")

    def _written(self, full: str, text: str, result: Any) -> int:
        index = int(result.modifiedIndex)
        self.indexes.written(full, int(result.createdIndex), text, index)
        return index

    def _put_persistent(self, key: str, full: str, text: bytes) -> Any:
        """Update the key if it exists, else create it: unlike a v2 ``set``, an update keeps its createdIndex.

        Raises:
            NameConflict: a key exists below ``key``, or ``key`` lies below a key.
        """
        path = self.keys.url_path(full)
        for _ in range(_ATTEMPTS):
            try:
                return self.call(lambda client: client.write(path, text, prevExist=True))
            except etcd.EtcdKeyNotFound as exc:
                if v2_disabled(exc):
                    raise
            except etcd.EtcdNotFile:
                self._clear_directory(key, full)
                continue
            except etcd.EtcdNotDir as exc:
                raise self._conflict_above(key, exc) from None
            try:
                return self.call(lambda client: client.write(path, text, prevExist=False))
            except etcd.EtcdAlreadyExist:
                continue
            except etcd.EtcdNotDir as exc:
                raise self._conflict_above(key, exc) from None
        raise BackendError(self.name, f"put {key!r}: the key kept appearing and vanishing during {_ATTEMPTS} attempts")

    def _swap(self, path: str, text: str, ttl: int, index: int) -> Any:
        # Conditioned on the index read, not the value: a value condition
        # would send the old value in the same form body, halving the
        # largest value a write can carry.
        return self.call(lambda client: client.write(path, text, ttl=ttl, prevIndex=index))

    def _conflict_above(self, key: str, exc: etcd.EtcdNotDir) -> Exception:
        """The error for a write below an existing key: etcd names that key as the cause of its "Not a directory"."""
        payload = getattr(exc, "payload", None)
        cause = payload.get("cause") if isinstance(payload, dict) else None
        conflict = self.keys.relative(cause) if isinstance(cause, str) else None
        if not conflict:
            # The root itself, or a key above it, is a plain key: no name of the caller's is at fault.
            return BackendError(self.name, f"put {key!r}: {exc}", exc)
        return NameConflict(key, conflict)

    def _clear_directory(self, key: str, full: str) -> None:
        """Remove the directory where ``key`` is to be written, if no key is left under it.

        v2 keeps a directory when its last key is deleted or expires; such a
        leftover is not a key and must not block the name. Each directory of
        the subtree is deleted deepest first without ``recursive``: etcd
        refuses a non-empty one, so a key written meanwhile by a concurrent
        registrant survives (the caller's next attempt then meets it). etcd
        has no conditional directory delete and deletes a plain key asked
        for as a directory, so a key that replaced a directory between the
        read and the delete is written back as it was.

        Raises:
            NameConflict: a key exists under the directory.
        """
        try:
            tree = self.call(lambda client: client.read(self.keys.url_path(full), recursive=True, quorum=True))
        except etcd.EtcdKeyNotFound:
            return  # gone meanwhile: the next attempt writes
        nodes = list(tree.get_subtree())
        for node in nodes:
            if not node.dir and node.key != full:
                below = self.keys.relative(str(node.key))
                raise NameConflict(key, below if below is not None else str(node.key))
            if not node.dir:
                return  # replaced by a key meanwhile: the next attempt meets it
        for node in sorted(nodes, key=lambda node: str(node.key).count("/"), reverse=True):
            path = self.keys.url_path(str(node.key))
            try:
                removed = self._delete_directory(path)
            except (etcd.EtcdDirNotEmpty, etcd.EtcdKeyNotFound):
                continue  # written under, or removed, meanwhile: the next attempt sees which
            if not removed.dir:
                self._restore(path, removed)

    def _delete_directory(self, path: str) -> Any:
        """Delete ``path`` as a directory, not recursively (etcd refuses a non-empty one)."""
        return self.call(lambda client: client.delete(path, dir=True))

    def _restore(self, path: str, removed: Any) -> None:
        """Write back a key that a directory delete removed (it replaced the directory after it was read)."""
        previous = getattr(removed, "_prev_node", None)
        if previous is None or previous.value is None:
            return
        # A TTL key keeps what was left of its TTL; its session refreshes it as before.
        ttl = max(1, int(previous.ttl)) if previous.ttl else None
        _log.warning("etcd2: key %s replaced an empty directory while it was removed; writing it back", path)
        with contextlib.suppress(etcd.EtcdAlreadyExist):
            self.call(lambda client: client.write(path, previous.value, ttl=ttl, prevExist=False))

    def delete(self, key: str, session: Session | None = None) -> bool:
        """Delete a key; with a session, only while it holds the value this session wrote.

        Returns:
            Whether a key was deleted.

        Raises:
            Unsupported: the server does not serve the v2 API.
            BackendUnavailable: no endpoint could be reached.
            PermissionDenied: the user's roles do not grant deleting the key; nothing was deleted.
            BackendError: the delete failed.
        """
        self._check_open()
        full = self.keys.full(key)
        path = self.keys.url_path(full)
        with self._boundary("delete", key):
            if session is None:
                try:
                    result = self.call(lambda client: client.delete(path))
                except (etcd.EtcdKeyNotFound, etcd.EtcdNotFile, etcd.EtcdNotDir) as exc:
                    if v2_disabled(exc):
                        raise
                    return False
                self.indexes.deleted(full, int(result.modifiedIndex))
                return True
            owner = self._session(session)
            entry = owner.index_of(full)
            if entry is None:
                return False
            value, index = entry
            try:
                result = owner.delete_if(full, value, index)
            except (etcd.EtcdKeyNotFound, etcd.EtcdCompareFailed):
                owner.release(full, value)
                return False
            # Released only once the server answered: after a lost connection
            # the caller retries, and the key must still count as ours.
            owner.release(full, value)
            self.indexes.deleted(full, int(result.modifiedIndex))
            return True

    def abandon(self) -> None:
        """Stop refreshes and watches without telling etcd, as a crash would; keys expire after their TTL."""
        for session in list(self._sessions):
            session.stop()
        for stream in list(self._streams):
            stream.close()

    def close(self) -> None:
        """Stop refreshes (keys of sessions not closed by the core expire) and watches. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.abandon()
        self._http.close()
        for client in self.clients:
            client.http.clear()

    def server_version(self) -> str:
        """etcd's version from ``/version``, ``"unknown"`` if no endpoint answers."""
        return fetch_version(self._http, self.settings)
