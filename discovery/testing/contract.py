"""Contract checks of the backend primitives, which any backend can run against itself.

In the manner of trio's ``check_one_way_stream``: each ``check_*`` function
takes a *maker*, a callable that returns a new, open
:class:`~discovery.backend.Backend` on the same store and root each time it is
called, and asserts one part of the contract written in
:mod:`discovery.backend` on the primitives themselves, below the core (the
conformance suite, :mod:`discovery.testing.suite`, checks the public API on
top of them). Capabilities decide what a check expects, never whether it
runs: a backend that declares one must show it, and one that does not must
not show the behaviour that would make the declaration true, wherever that
is observable. :func:`check_backend` runs every check;
:class:`BackendContract` is the pytest entry, one test per check, for a test
module that provides a ``backend_maker`` fixture. Each check works under a
fresh key prefix of its own, so one root serves them all, and closes every
backend it made. Values bound to a session are JSON objects, as the core
writes them (etcd v2 stores its owner field in them).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import ClassVar, TypeVar

import pytest

from discovery._config import resolve
from discovery.backend import Backend, Batch, Change, ChangeKind, ChangeStream, Gap, Record, Session
from discovery.capabilities import Capability
from discovery.errors import AlreadyRegistered, InvalidInput, RegistryClosed, SessionExpired, Unsupported
from discovery.testing.waiting import wait_until

__all__ = [
    "BackendContract",
    "BackendMaker",
    "check_after_close",
    "check_atomic_snapshot",
    "check_backend",
    "check_empty_prefix",
    "check_fencing",
    "check_foreign_session",
    "check_idle_stream",
    "check_native_ephemeral",
    "check_resume",
    "check_round_trip",
    "check_session_close",
    "check_watch_from_now",
    "maker_from_url",
]

BackendMaker = Callable[[], Backend]
"""Returns a new, open backend; every backend it returns is on the same store and root."""

_E = TypeVar("_E", bound=BaseException)
_T = TypeVar("_T")

_TIMEOUT = 30.0
# Keys held idle: enough to tell per-key traffic from the noise of a shared server.
_HELD_KEYS = 10
# Listings raced by a writer, each after more writes; the writer stops at the cap at the latest.
_RACED_LISTINGS = 20
_RACING_PUTS_CAP = 5000


def maker_from_url(url: str) -> BackendMaker:
    """A maker of backends for ``url``, built as ``discovery.connect(url)`` builds its backend.

    Raises:
        ConfigurationError: the URL, its backend or an option is refused.
    """
    resolved = resolve(url, None, {})
    return lambda: resolved.backend(resolved.target)


class _ForeignSession(Session):
    """A session no backend opened: what a session of another backend class looks like to this one."""

    @property
    def id(self) -> str:
        return "foreign"

    def close(self) -> None:
        self.mark_lost()


@contextlib.contextmanager
def _making(maker: BackendMaker) -> Iterator[Callable[[], Backend]]:
    """Hand out backends from ``maker`` and close each of them at the end."""
    with contextlib.ExitStack() as made:

        def make() -> Backend:
            backend = maker()
            made.callback(backend.close)
            return backend

        yield make


def _prefix() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}/"


def _ttl(backend: Backend, ttl: float | None) -> float:
    return ttl if ttl is not None else max(type(backend).min_ttl, 0.5)


def _session_value(version: int = 1) -> bytes:
    return json.dumps({"v": version}, separators=(",", ":")).encode()


def _raises(error: type[_E], call: Callable[[], object], what: str) -> _E:
    """Call ``call`` and return the ``error`` it raised; fail if it raised another or returned."""
    try:
        result = call()
    except error as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected {error.__name__}, it returned {result!r}")


def _read(stream: ChangeStream, count: int, timeout: float, what: str) -> list[Batch]:
    """Read batches until they hold ``count`` changes; fail on a gap or at the deadline."""
    batches: list[Batch] = []
    deadline = time.monotonic() + timeout
    while sum(len(batch.changes) for batch in batches) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{what}: the stream did not deliver {count} changes in {timeout:g} s: {batches!r}")
        item = stream.next(min(remaining, 0.5))
        if isinstance(item, Gap):
            raise AssertionError(f"{what}: unexpected {item!r} after {batches!r}")
        if item is not None:
            batches.append(item)
    return batches


def _changes(batches: list[Batch]) -> list[Change]:
    return [change for batch in batches for change in batch.changes]


def _check_batches(batches: list[Batch], what: str, *, exact: bool) -> None:
    """Batch revisions strictly grow, and each is its largest change's (``exact``) or above it."""
    last = 0
    for batch in batches:
        assert batch.revision > last, f"{what}: batch revision {batch.revision} after {last}: {batches!r}"
        top = max(change.mod_revision for change in batch.changes)
        assert batch.revision == top if exact else batch.revision >= top, (
            f"{what}: batch at {batch.revision} holds changes up to revision {top}: {batch!r}"
        )
        last = batch.revision


def _record(backend: Backend, key: str) -> Record | None:
    prefix = key.rpartition("/")[0] + "/"
    found = [record for record in backend.list(prefix).records if record.key == key]
    return found[0] if found else None


def check_round_trip(make_backend: BackendMaker) -> None:
    """Put, list, overwrite and delete persistent keys; revisions grow with each write.

    A listing holds exactly the keys under its prefix, with their values and
    revisions, at a revision no lower than its records'; an overwrite keeps
    the create revision; a delete reports whether a key was there; a path
    that only leads to keys is no key.
    """
    with _making(make_backend) as made:
        backend = made()
        p = _prefix()
        h1, h2, elsewhere = f"{p}buzz/api/h1", f"{p}buzz/web/h2", f"{p}other/x/y"
        first = backend.put(h1, b"one", None)
        second = backend.put(h2, b"two", None)
        third = backend.put(elsewhere, b"three", None)
        assert 0 < first < second < third, f"revisions must grow with each write: {first}, {second}, {third}"
        listing = backend.list(f"{p}buzz/")
        assert listing.revision >= second, f"listing at {listing.revision} holds a key written at {second}"
        found = {r.key: (r.value, r.create_revision, r.mod_revision) for r in listing.records}
        assert found == {h1: (b"one", first, first), h2: (b"two", second, second)}, found
        assert {r.key for r in backend.list(p).records} == {h1, h2, elsewhere}
        updated = backend.put(h1, b"uno", None)
        assert updated > third, f"an overwrite at {updated} after a write at {third}"
        record = _record(backend, h1)
        assert record is not None and (record.value, record.create_revision, record.mod_revision) == (
            b"uno",
            first,
            updated,
        ), f"an overwrite must keep the create revision {first} and take {updated}: {record!r}"
        assert backend.delete(h1) is True, "delete of an existing key must return True"
        assert backend.delete(h1) is False, "delete of a missing key must return False"
        assert backend.delete(f"{p}buzz/web") is False, "a path leading to keys is no key to delete"
        assert backend.delete(f"{p}buzz/api") is False, "a path whose keys are gone is no key to delete"
        assert [r.key for r in backend.list(f"{p}buzz/").records] == [h2]
        assert [r.key for r in backend.list(f"{p}buzz/web/").records] == [h2]


def check_empty_prefix(make_backend: BackendMaker) -> None:
    """A prefix with nothing under it, or under a key, lists nothing.

    With ``ATOMIC_SNAPSHOT`` the listing is read at the store's current
    revision, so it is no lower than a write made before it.
    """
    with _making(make_backend) as made:
        backend = made()
        p = _prefix()
        written = backend.put(f"{p}elsewhere/a/b", b"x", None)
        listing = backend.list(f"{p}nothing/")
        assert listing.records == (), listing
        assert backend.list(f"{p}elsewhere/a/b/").records == (), "a prefix below a key must list nothing"
        if Capability.ATOMIC_SNAPSHOT in backend.capabilities:
            assert listing.revision >= written, (
                f"declares ATOMIC_SNAPSHOT, but an empty listing is at {listing.revision}, "
                f"below a write made before it at {written}"
            )


def check_session_close(make_backend: BackendMaker, *, ttl: float | None = None, timeout: float = _TIMEOUT) -> None:
    """``Session.close()`` removes the session's keys at once, is idempotent, and the session is then refused.

    Its listeners hear ``False`` once; a put with it raises ``SessionExpired``
    and writes nothing; a delete with it returns False.
    """
    with _making(make_backend) as made:
        backend = made()
        p = _prefix()
        session = backend.open_session(_ttl(backend, ttl))
        assert session.alive and session.id, f"a new session must be alive and have an id: {session!r}"
        heard: list[bool] = []
        session.add_listener(heard.append)
        keys = [f"{p}svc/a/h{n}" for n in range(3)]
        for key in keys:
            backend.put(key, _session_value(), session)
        assert sorted(r.key for r in backend.list(p).records) == keys
        session.close()
        session.close()
        assert not session.alive, "a closed session must not be alive"
        assert backend.list(p).records == (), "Session.close() must remove its keys at once"
        wait_until(lambda: heard, timeout, message="the session's listener to hear it closed")
        assert heard == [False], f"the listener must hear False once: {heard}"
        _raises(SessionExpired, lambda: backend.put(keys[0], _session_value(), session), "put with a closed session")
        assert backend.delete(keys[0], session) is False, "delete with a closed session must return False"
        assert backend.list(p).records == (), "a refused put must write nothing"


def check_after_close(make_backend: BackendMaker, *, ttl: float | None = None) -> None:
    """After ``Backend.close()`` (idempotent) every primitive raises ``RegistryClosed``, and so do its streams.

    Closing a stream is idempotent and its ``next()`` then raises
    ``RegistryClosed`` too; another backend on the same store is not affected.
    """
    with _making(make_backend) as made:
        backend, other = made(), made()
        p = _prefix()
        key = f"{p}svc/a/h1"
        session_ttl = _ttl(backend, ttl)
        session = backend.open_session(session_ttl)
        backend.put(key, _session_value(), session)
        stream = backend.watch(p, None)
        survivor = other.watch(p, None)
        backend.close()
        backend.close()
        calls: list[tuple[str, Callable[[], object]]] = [
            ("list", lambda: backend.list(p)),
            ("watch", lambda: backend.watch(p, None)),
            ("watch from a revision", lambda: backend.watch(p, 1)),
            ("open_session", lambda: backend.open_session(session_ttl)),
            ("put", lambda: backend.put(f"{p}svc/a/h2", b"x", None)),
            ("put with a session", lambda: backend.put(key, _session_value(), session)),
            ("delete", lambda: backend.delete(key)),
            ("delete with a session", lambda: backend.delete(key, session)),
            ("next() of a stream it opened", lambda: stream.next(0)),
        ]
        for what, call in calls:
            _raises(RegistryClosed, call, f"{what}, after Backend.close()")
        stream.close()
        stream.close()
        _raises(RegistryClosed, lambda: stream.next(0), "next() after ChangeStream.close()")
        other.list(p)
        survivor.next(0)
        survivor.close()


def check_foreign_session(make_backend: BackendMaker, *, ttl: float | None = None) -> None:
    """A session this backend did not open is refused by put and delete with ``InvalidInput`` (field ``session``).

    Both a session of another backend instance (another connection, maybe to
    another server) and one of another backend class; nothing is written or
    deleted.
    """
    with _making(make_backend) as made:
        backend, other = made(), made()
        p = _prefix()
        key = f"{p}svc/a/h1"
        written = backend.put(key, b"persistent", None)
        session_ttl = _ttl(backend, ttl)
        theirs = other.open_session(session_ttl)

        def refused(what: str, foreign: Session) -> None:
            for action, call in (
                ("put", lambda: backend.put(f"{p}svc/a/h2", _session_value(), foreign)),
                ("delete", lambda: backend.delete(key, foreign)),
            ):
                error = _raises(InvalidInput, call, f"{action} with {what}")
                assert error.field == "session", f"{action} with {what}: the error must name 'session': {error!r}"

        refused("a session of another backend instance", theirs)
        refused("a session of another backend class", _ForeignSession(session_ttl))
        assert [(r.key, r.value, r.mod_revision) for r in backend.list(p).records] == [(key, b"persistent", written)]
        theirs.close()


def check_fencing(make_backend: BackendMaker, *, ttl: float | None = None) -> None:
    """A key bound to one registrant's session is fenced against another's; a persistent key against both.

    The owner replaces its key (create revision kept) and deletes it; another
    backend's session can neither put (``AlreadyRegistered``, naming service
    and id) nor delete it (False, nothing changed); once deleted the key is
    free for the other; a persistent put overwrites a key bound to a session.
    """
    with _making(make_backend) as made:
        ours, theirs = made(), made()
        p = _prefix()
        key, plain = f"{p}buzz/api/host-1", f"{p}buzz/api/plain"
        mine, other = ours.open_session(_ttl(ours, ttl)), theirs.open_session(_ttl(theirs, ttl))
        created = ours.put(key, _session_value(1), mine)
        replaced = ours.put(key, _session_value(2), mine)
        assert replaced > created, f"the owner's put at {replaced} after its create at {created}"

        def state(backend: Backend, name: str) -> tuple[bytes, int, int] | None:
            record = _record(backend, name)
            return None if record is None else (record.value, record.create_revision, record.mod_revision)

        assert state(ours, key) == (_session_value(2), created, replaced)
        error = _raises(AlreadyRegistered, lambda: theirs.put(key, _session_value(3), other), "put over a held key")
        assert (error.service, error.instance_id) == (f"{p}buzz/api", "host-1"), error
        assert theirs.delete(key, other) is False, "another session's delete of a held key must return False"
        assert state(theirs, key) == (_session_value(2), created, replaced), "a fenced write changed the key"

        ours.put(plain, b"persistent", None)
        _raises(AlreadyRegistered, lambda: ours.put(plain, _session_value(), mine), "session put over a persistent key")
        assert ours.delete(plain, mine) is False, "a session's delete of a persistent key must return False"
        assert state(ours, plain) is not None and ours.delete(plain) is True and ours.delete(plain) is False

        assert ours.delete(key, mine) is True, "the owner's delete must remove its key"
        assert ours.delete(key, mine) is False
        assert state(theirs, key) is None
        taken = theirs.put(key, _session_value(4), other)
        assert taken > replaced and state(ours, key) == (_session_value(4), taken, taken)
        overwritten = ours.put(key, b"persistent", None)
        assert overwritten > taken
        record = state(theirs, key)
        assert record is not None and record[0] == b"persistent" and record[2] == overwritten, record
        mine.close()
        other.close()


def check_watch_from_now(make_backend: BackendMaker, *, timeout: float = _TIMEOUT) -> None:
    """``watch(prefix, None)`` is established when it returns, and delivers every change under the prefix.

    A put made right after ``watch()`` returns is delivered, one made before
    is not, nor one under a name that merely starts like the prefix. Puts,
    an update and a delete come with their values and revisions; an explicit
    delete's ``expired`` is False with ``EXPIRY_CAUSE``, else None. A backend
    with ``INTERMEDIATE_VALUES`` gets the writes back to back; others one at
    a time, since they may deliver only the latest value.
    """
    with _making(make_backend) as made:
        backend = made()
        p = _prefix()
        q = f"{p}w/"
        h0, h1, h2 = f"{q}a/h0", f"{q}a/h1", f"{q}a/h2"
        backend.put(h0, b"before", None)
        stream = backend.watch(q, None)
        try:
            back_to_back = Capability.INTERMEDIATE_VALUES in backend.capabilities
            batches: list[Batch] = []

            def step(write: Callable[[], _T]) -> _T:
                result = write()
                if not back_to_back:
                    batches.extend(_read(stream, 1, timeout, "watch from now"))
                return result

            first = step(lambda: backend.put(h1, b"v1", None))
            backend.put(f"{p}wx/a/h1", b"not under the prefix", None)
            updated = step(lambda: backend.put(h1, b"v2", None))
            created = step(lambda: backend.put(h2, b"x", None))
            assert step(lambda: backend.delete(h2)) is True
            if back_to_back:
                batches.extend(_read(stream, 4, timeout, "watch from now"))
        finally:
            stream.close()
        changes = _changes(batches)
        assert [(c.kind, c.key, c.value) for c in changes] == [
            (ChangeKind.PUT, h1, b"v1"),
            (ChangeKind.PUT, h1, b"v2"),
            (ChangeKind.PUT, h2, b"x"),
            (ChangeKind.DELETE, h2, None),
        ], changes
        assert (changes[0].create_revision, changes[0].mod_revision) == (first, first), changes[0]
        assert (changes[1].create_revision, changes[1].mod_revision) == (first, updated), changes[1]
        assert (changes[2].create_revision, changes[2].mod_revision) == (created, created), changes[2]
        assert changes[3].mod_revision > created, changes[3]
        expired = False if Capability.EXPIRY_CAUSE in backend.capabilities else None
        assert changes[3].expired is expired, f"an explicit delete's expired must be {expired}: {changes[3]!r}"
        # A backend that cannot read a change's own revision (ZooKeeper) may
        # stamp a batch above its changes; never below.
        _check_batches(batches, "watch from now", exact=False)


def check_idle_stream(make_backend: BackendMaker) -> None:
    """An idle stream's ``next(timeout)`` waits about ``timeout`` and returns None; ``close()`` is prompt.

    ``close()`` from another thread returns within seconds, the consumer's
    ``next()`` then raises ``RegistryClosed``, and a second ``close()`` does
    nothing.
    """
    with _making(make_backend) as made:
        backend = made()
        stream = backend.watch(f"{_prefix()}idle/", None)
        started = time.monotonic()
        assert stream.next(0.3) is None, "an idle stream must return None"
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.3, f"next(0.3) on an idle stream took {waited:.2f} s"
        assert stream.next(0) is None
        took: list[float] = []

        def close() -> None:
            begun = time.monotonic()
            stream.close()
            took.append(time.monotonic() - begun)

        closer = threading.Timer(0.2, close)
        closer.start()
        started = time.monotonic()
        while True:
            try:
                stream.next(0.1)
            except RegistryClosed:
                break
            assert time.monotonic() - started < 10, "next() kept returning after close()"
        ended = time.monotonic() - started
        closer.join(10)
        assert took and took[0] < 3, f"ChangeStream.close() took {took} s"
        assert ended < 3, f"next() raised RegistryClosed {ended:.2f} s after close() began"
        stream.close()


def check_resume(make_backend: BackendMaker, *, timeout: float = _TIMEOUT) -> None:
    """``watch(prefix, after_revision)`` resumes after that revision with ``RESUME_FROM_REVISION``, else is a gap.

    Declared: the changes after the revision arrive in order with their own
    revisions, each batch at its largest change's revision, and a stream
    from the latest revision stays idle. Not declared: the first item is a
    :class:`Gap`, and asking again returns the same gap.
    """
    with _making(make_backend) as made:
        backend = made()
        p = _prefix()
        first = backend.put(f"{p}a/h1", b"1", None)
        second = backend.put(f"{p}a/h2", b"2", None)
        third = backend.put(f"{p}a/h3", b"3", None)
        stream = backend.watch(p, first)
        try:
            if Capability.RESUME_FROM_REVISION in backend.capabilities:
                batches = _read(stream, 2, timeout, f"resume after revision {first}")
                assert [(c.kind, c.key, c.value, c.create_revision, c.mod_revision) for c in _changes(batches)] == [
                    (ChangeKind.PUT, f"{p}a/h2", b"2", second, second),
                    (ChangeKind.PUT, f"{p}a/h3", b"3", third, third),
                ], batches
                _check_batches(batches, f"resume after revision {first}", exact=True)
                latest = backend.watch(p, third)
                try:
                    assert latest.next(0.3) is None, f"a stream from the latest revision {third} must be idle"
                finally:
                    latest.close()
            else:
                item = wait_until(lambda: stream.next(0.5), timeout, message="a first item from a resumed stream")
                assert isinstance(item, Gap) and item.reason, (
                    f"without RESUME_FROM_REVISION the first item must be a Gap with a reason, got {item!r}"
                )
                assert stream.next(0) == item, "a stream that ended with a gap must return it again"
        finally:
            stream.close()


def check_atomic_snapshot(make_backend: BackendMaker, *, timeout: float = _TIMEOUT) -> None:
    """Listings raced by another client's writes: one consistent read at one revision with ``ATOMIC_SNAPSHOT``.

    Every backend: a listing's revision is no lower than any record's
    ``mod_revision``, never lower than the same client's previous listing,
    and it holds only written keys with their values and revisions.
    Declared: it holds exactly the writes at or below its revision. A
    backend that does not declare it may still read atomically; its lack
    would show only by chance, so that direction is not checked.
    """
    with _making(make_backend) as made:
        writer, reader = made(), made()
        p = _prefix()
        written: dict[str, int] = {}
        failures: list[BaseException] = []
        stop = threading.Event()

        def write() -> None:
            try:
                for n in range(_RACING_PUTS_CAP):
                    if stop.is_set():
                        return
                    key = f"{p}k/{n:05}"
                    written[key] = writer.put(key, b"x", None)
            except BaseException as exc:  # reported by the checking thread
                failures.append(exc)

        thread = threading.Thread(target=write, name="contract-writer", daemon=True)
        thread.start()
        listings = []

        def wrote_past(count: int) -> Callable[[], bool]:
            return lambda: len(written) > count or not thread.is_alive()

        try:
            for _ in range(_RACED_LISTINGS):
                wait_until(
                    wrote_past(len(written)),
                    timeout,
                    interval=0.005,
                    message="the racing writer to write on",
                )
                listings.append(reader.list(f"{p}k/"))
        finally:
            stop.set()
            thread.join(timeout)
        if failures:
            raise AssertionError("the racing writer failed") from failures[0]
        assert not thread.is_alive(), f"the racing writer did not stop in {timeout:g} s"
        final = reader.list(f"{p}k/")
        listings.append(final)
        atomic = Capability.ATOMIC_SNAPSHOT in reader.capabilities
        last = 0
        for listing in listings:
            found = {record.key: record for record in listing.records}
            assert found.keys() <= written.keys(), f"listing holds keys never written: {found.keys() - written.keys()}"
            for key, record in found.items():
                assert (record.value, record.create_revision, record.mod_revision) == (b"x", written[key], written[key])
                assert record.mod_revision <= listing.revision, (
                    f"listing at revision {listing.revision} holds {key} modified at {record.mod_revision}"
                )
            assert listing.revision >= last, f"a listing at {listing.revision} after one at {last}"
            last = listing.revision
            if atomic:
                expected = {key for key, revision in written.items() if revision <= listing.revision}
                missing = sorted(expected - found.keys())
                assert not missing, (
                    f"declares ATOMIC_SNAPSHOT, but the listing at revision {listing.revision} lacks "
                    f"{len(missing)} keys written at or below it, e.g. {missing[0]} at {written[missing[0]]}"
                )
        assert {r.key for r in final.records} == written.keys(), "a listing after the writes must hold them all"


def check_native_ephemeral(make_backend: BackendMaker, *, ttl: float | None = None, timeout: float = _TIMEOUT) -> None:
    """Keys bound to a session live without per-key refreshes with ``NATIVE_EPHEMERAL``, and vanish with a crash.

    Declared: a session holding a few keys idle for three ttls moves the
    store's revision (another client's listing of them) by fewer than the
    number of keys. Not declared: the keys are kept by per-key refreshes, so
    the revision soon moves by at least that many. Either way the keys stay
    meanwhile, and where the backend can play a crash (``abandon()``), they
    vanish without this process's help.
    """
    with _making(make_backend) as made:
        holder, observer = made(), made()
        p = _prefix()
        session_ttl = _ttl(holder, ttl)
        session = holder.open_session(session_ttl)
        keys = [f"{p}held/h{n}" for n in range(_HELD_KEYS)]
        for key in keys:
            holder.put(key, _session_value(), session)
        start = observer.list(p).revision

        def held() -> int:
            listing = observer.list(p)
            assert sorted(r.key for r in listing.records) == keys, f"held keys went: {listing.records!r}"
            assert session.alive, "the holding session was lost"
            return listing.revision - start

        if Capability.NATIVE_EPHEMERAL in holder.capabilities:
            window = max(3 * session_ttl, 1.0)
            until = time.monotonic() + window
            while time.monotonic() < until:
                held()
                time.sleep(window / 20)
            moved = held()
            assert moved < _HELD_KEYS, (
                f"declares NATIVE_EPHEMERAL, but {_HELD_KEYS} keys held idle for {window:g} s "
                f"moved the revision by {moved}: per-key refreshes?"
            )
        else:
            wait_until(
                lambda: held() >= _HELD_KEYS,
                timeout,
                message=(
                    f"{holder.name} does not declare NATIVE_EPHEMERAL, yet {_HELD_KEYS} keys held idle "
                    f"moved the revision by fewer than {_HELD_KEYS} (no per-key refreshes: declare it?)"
                ),
            )
        try:
            holder.abandon()
        except Unsupported:
            session.close()
            return
        wait_until(
            lambda: observer.list(p).records == (),
            timeout,
            message="the keys of an abandoned backend's session to vanish",
        )


def check_backend(make_backend: BackendMaker, *, ttl: float | None = None, timeout: float = _TIMEOUT) -> None:
    """Run every contract check against the backends ``make_backend`` returns.

    Args:
        make_backend: returns a new, open backend on one store and root at each call.
        ttl: the session ttl to use; None for the backend's ``min_ttl``, at least 0.5 s.
        timeout: the generous deadline for waiting on a condition, in seconds.

    Raises:
        AssertionError: the backend breaks the contract; the message says where.
    """
    check_round_trip(make_backend)
    check_empty_prefix(make_backend)
    check_session_close(make_backend, ttl=ttl, timeout=timeout)
    check_after_close(make_backend, ttl=ttl)
    check_foreign_session(make_backend, ttl=ttl)
    check_fencing(make_backend, ttl=ttl)
    check_watch_from_now(make_backend, timeout=timeout)
    check_idle_stream(make_backend)
    check_resume(make_backend, timeout=timeout)
    check_atomic_snapshot(make_backend, timeout=timeout)
    check_native_ephemeral(make_backend, ttl=ttl, timeout=timeout)


class BackendContract:
    """The contract checks as pytest tests; a backend's test module subclasses it and provides ``backend_maker``.

    ::

        class TestEtcdContract(BackendContract):
            @pytest.fixture
            def backend_maker(self, etcd_cluster: EtcdCluster) -> BackendMaker:
                return maker_from_url(etcd_cluster.url("etcd", "/contract"))

    Class attributes:
        ttl: the session ttl the checks use; None for the backend's ``min_ttl``, at least 0.5 s.
        timeout: the generous deadline for waiting on a condition, in seconds.
    """

    ttl: ClassVar[float | None] = None
    timeout: ClassVar[float] = _TIMEOUT

    @pytest.fixture
    def backend_maker(self) -> BackendMaker:
        """Returns a new, open backend on one store and root at each call. Required: override it."""
        raise NotImplementedError(f"{type(self).__name__} must provide the backend_maker fixture")

    def test_round_trip(self, backend_maker: BackendMaker) -> None:
        check_round_trip(backend_maker)

    def test_empty_prefix(self, backend_maker: BackendMaker) -> None:
        check_empty_prefix(backend_maker)

    def test_session_close(self, backend_maker: BackendMaker) -> None:
        check_session_close(backend_maker, ttl=self.ttl, timeout=self.timeout)

    def test_after_close(self, backend_maker: BackendMaker) -> None:
        check_after_close(backend_maker, ttl=self.ttl)

    def test_foreign_session(self, backend_maker: BackendMaker) -> None:
        check_foreign_session(backend_maker, ttl=self.ttl)

    def test_fencing(self, backend_maker: BackendMaker) -> None:
        check_fencing(backend_maker, ttl=self.ttl)

    def test_watch_from_now(self, backend_maker: BackendMaker) -> None:
        check_watch_from_now(backend_maker, timeout=self.timeout)

    def test_idle_stream(self, backend_maker: BackendMaker) -> None:
        check_idle_stream(backend_maker)

    def test_resume(self, backend_maker: BackendMaker) -> None:
        check_resume(backend_maker, timeout=self.timeout)

    def test_atomic_snapshot(self, backend_maker: BackendMaker) -> None:
        check_atomic_snapshot(backend_maker, timeout=self.timeout)

    def test_native_ephemeral(self, backend_maker: BackendMaker) -> None:
        check_native_ephemeral(backend_maker, ttl=self.ttl, timeout=self.timeout)
