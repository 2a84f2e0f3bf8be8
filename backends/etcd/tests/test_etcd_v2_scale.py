"""Regression tests of the etcd v2 backend for issue 18, against a real etcd 3.4: the watch and the refreshes at scale.

They failed before the fix: an idle watch resumed its long poll from the
index the poll had started at, thousands of indexes back under other keys'
writes, and fell out of etcd's 1000-event window every 5 s (a resync each
time); a watch made one request per event (about 900 a second at best) and
fell out of the window behind a fast writer; a session refreshed its due
keys in rounds of four contiguous chunks, so a key waited for the keys of
other chunks that expire after it, and past about 1,200 refreshes a second
keys expired without a word; and an outage cost a refresh request per key
twice a second. The streamed watch that replaces the long polls brings
its own hazard, tested here too: etcd 3.4 drops a streamed watcher whose
buffer overflows without ending its answer.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import etcd
import pytest

import discovery
from discovery.backend import Batch, ChangeKind, Gap, Session, Target
from discovery.servers import EtcdCluster, make_test_certificates
from discovery.testing.waiting import wait_until
from discovery_etcd import Etcd2Backend
from discovery_etcd._v2 import V2WatchStream
from discovery_etcd._v2_session import REFRESH_WORKERS, RefreshCapacityWarning, TtlSession

Factory = Callable[..., Any]


def owned(session: Session) -> bytes:
    return f'{{"registrant":"{session.id}"}}'.encode()


def put_all(backend: Etcd2Backend, keys: list[str], session: Session | None, threads: int = 8) -> None:
    """Write every key (through ``session``, if given) from a few threads at once."""
    errors: list[BaseException] = []

    def write(part: list[str]) -> None:
        try:
            for key in part:
                backend.put(key, owned(session) if session is not None else b"{}", session)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(keys[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors


def own_backend(cluster: EtcdCluster, scheme: str = "http", **options: object) -> Etcd2Backend:
    """A backend on ``cluster`` under a fresh root (for the clusters a test starts itself)."""
    values = {name: option.default for name, option in Etcd2Backend.options.items()}
    values.update(options)
    hosts = []
    for url in cluster.client_urls:
        host, _, port = url.removeprefix(f"{scheme}://").rpartition(":")
        hosts.append((host, int(port)))
    return Etcd2Backend(Target("etcd2", tuple(hosts), f"/t-{uuid.uuid4().hex[:12]}", values))


# -- the watch ---------------------------------------------------------------------------------------


def test_an_idle_watch_keeps_its_place_while_other_keys_churn(
    make_backend: Factory, etcd_own: EtcdCluster, root: str
) -> None:
    busy = make_backend(Etcd2Backend, etcd_own)
    session = busy.open_session(1)
    # About 900 refreshes a second elsewhere in the keyspace: the 1000-event
    # window passes an idle watcher's position in about a second.
    put_all(busy, [f"busy/a/h{n:03}" for n in range(300)], session)
    with discovery.connect(etcd_own.url("etcd2", root)) as registry, registry.watch("quiet") as watch:
        stream = busy.watch("quiet/", None)
        assert isinstance(stream, V2WatchStream)
        position, started = busy.list("").revision, time.monotonic()
        # Longer than a long poll's 5 s timer, and several windows of history.
        wait_until(
            lambda: busy.list("").revision > position + 3000 and time.monotonic() - started > 6,
            timeout=60,
            message="the refreshes did not advance the index",
        )
        assert stream.next(0.2) is None
        assert (watch.resyncs, watch.gap_reasons) == (0, ())
        # The streamed watch, and a long poll for the history before it (quiet: it waits for the next event).
        assert stream.requests <= 2, stream.requests
        registry.register("quiet/api", "h1", ttl=5)
        event = watch.get(10)
        assert event is not None and (event.kind, event.instance_id, event.resync) == (
            discovery.EventKind.ADDED,
            "h1",
            False,
        )
        item = wait_until(lambda: stream.next(0.5), timeout=10, message="the raw stream saw nothing")
        assert isinstance(item, Batch) and [c.key for c in item.changes] == ["quiet/api/h1"]
        assert (watch.resyncs, watch.gap_reasons) == (0, ())
        stream.close()
    session.close()


def test_a_fast_writers_events_come_on_one_streamed_watch_in_order(
    make_backend: Factory, etcd_own: EtcdCluster
) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    stream = backend.watch("fast/", None)
    assert isinstance(stream, V2WatchStream)
    wait_until(lambda: stream.confirmed, timeout=10, message="stream not confirmed")
    count = 1500
    written: list[int] = []
    lock = threading.Lock()

    def write(part: range) -> None:
        for n in part:
            revision = backend.put(f"fast/a/k{n % 40}", str(n).encode(), None)
            with lock:
                written.append(revision)

    writers = [threading.Thread(target=write, args=(range(n, count, 6),)) for n in range(6)]
    for writer in writers:
        writer.start()
    delivered: list[int] = []
    deadline = time.monotonic() + 60
    while len(delivered) < count and time.monotonic() < deadline:
        item = stream.next(1.0)
        assert not isinstance(item, Gap), f"gap after {len(delivered)} events"
        if item is not None:
            delivered += [change.mod_revision for change in item.changes]
    for writer in writers:
        writer.join()
    assert delivered == sorted(written), "every write, once, in commit order"
    # One streamed watch carried them, not a request per event (the catch-up
    # of the few writes between the position and the watch's start aside).
    assert stream.requests <= 5, stream.requests
    stream.close()


def test_a_streamed_watch_etcd_drops_in_a_burst_of_expiries_is_found(
    make_backend: Factory, etcd_own: EtcdCluster, root: str
) -> None:
    """etcd 3.4 drops a streamed watcher whose buffer of 100 events overflows, and never ends its answer.

    A burst of expiries does it however fast the stream reads: etcd expires
    the keys due in one sweep (every 500 ms) in a loop that fills the
    watcher's buffer faster than its connection drains it. The stream must
    not go quiet: it delivers every change in order, or those it can and
    then a Gap.
    """
    backend = make_backend(Etcd2Backend, etcd_own)
    stream = backend.watch("burst/", None)
    assert isinstance(stream, V2WatchStream)
    wait_until(lambda: stream._following, timeout=10, message="the streamed watch did not open")
    host, _, port = etcd_own.client_urls[0].removeprefix("http://").rpartition(":")
    client = etcd.Client(host=host, port=int(port), read_timeout=10)
    count = 2000
    errors: list[BaseException] = []

    def write(part: range) -> None:
        try:
            for n in part:
                client.write(f"{root}/burst/a/k{n}", "{}", ttl=2)  # expire together, about 500 a sweep
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(range(n, count, 8),)) for n in range(8)]
    for writer in writers:
        writer.start()
    changes: list[tuple[int, ChangeKind]] = []
    gap: Gap | None = None
    deadline = time.monotonic() + 60
    while len(changes) < 2 * count and gap is None:
        assert time.monotonic() < deadline, f"the stream went quiet after {len(changes)} changes"
        item = stream.next(1.0)
        if isinstance(item, Gap):
            gap = item
        elif item is not None:
            changes += [(change.mod_revision, change.kind) for change in item.changes]
    for writer in writers:
        writer.join()
    assert not errors, errors
    revisions = [revision for revision, _ in changes]
    assert revisions == sorted(set(revisions)), "in order, each once"
    assert gap in (None, Gap("history-window"))
    assert stream.drops >= 1, "etcd dropped the streamed watch, and the guard found it"
    stream.close()


# -- the refreshes -----------------------------------------------------------------------------------


def test_thousands_of_keys_at_a_short_ttl_all_stay_alive(make_backend: Factory, etcd_own: EtcdCluster) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    session = backend.open_session(4)
    assert isinstance(session, TtlSession)
    gone: list[str] = []
    session.add_key_listener(gone.append)
    count = 3000  # 2,250 refreshes a second at ttl 4 s; they expire below 750 a second
    keys = [f"many/a/h{n:04}" for n in range(count)]
    put_all(backend, keys, session)
    stream = backend.watch("many/", None)
    # Every key refreshed twice over: a few seconds past two refresh intervals.
    wait_until(lambda: session.keepalive_requests >= 2 * count, timeout=60, message="the keys were not refreshed")
    assert gone == [], f"{len(gone)} keys expired, first {gone[:3]}"
    assert session.keepalive_failures == 0
    assert session.alive
    assert stream.next(0.2) is None, "a key changed or expired"
    assert len(backend.list("many/").records) == count
    assert session.refresh_lag < session.ttl_seconds * 2 / 3
    stream.close()
    session.close()
    assert backend.list("many/").records == ()


def refresh_order(backend: Etcd2Backend, session: TtlSession, count: int) -> tuple[list[str], list[str]]:
    """Hold ``count`` keys due within a second in a shuffled order; the order they expire in, and were refreshed in.

    The keys are handed over (:meth:`TtlSession.hold`) in one order with due
    times in another, so only a queue ordered by expiry refreshes them in the
    order they expire. A refresh moves the key's modifiedIndex: the new
    indexes give the order the refreshes reached etcd.
    """
    keys = [f"order/a/k{n:04}" for n in range(count)]
    put_all(backend, keys, session)  # due a third of the TTL (10 s) later: not during the test
    written: dict[str, tuple[str, int]] = {}
    for key in keys:
        entry = session.index_of(backend.keys.full(key))
        assert entry is not None
        written[key] = entry
    ranks = list(range(count))
    random.Random(18).shuffle(ranks)
    start = time.monotonic() + 1 - session.ttl_seconds / 3
    for key, rank in zip(keys, ranks, strict=True):
        value, index = written[key]
        session.hold(backend.keys.full(key), value, start + rank * 0.001, index)

    def refreshed() -> dict[str, int] | None:
        after: dict[str, int] = {}
        for key in keys:
            entry = session.index_of(backend.keys.full(key))
            if entry is None or entry[1] == written[key][1]:
                return None
            after[key] = entry[1]
        return after

    indexes = wait_until(refreshed, timeout=30, message="the keys were not refreshed")
    by_expiry = [key for _, key in sorted(zip(ranks, keys, strict=True))]
    return by_expiry, sorted(keys, key=lambda key: indexes[key])


def test_keys_are_refreshed_earliest_expiry_first(make_backend: Factory, etcd_own: EtcdCluster) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    # One refresh in flight at a time: they reach etcd exactly in the order they were taken in.
    session = TtlSession(backend, 30, workers=1)
    by_expiry, by_refresh = refresh_order(backend, session, 40)
    assert by_refresh == by_expiry
    session.close()


def test_a_key_waits_only_for_the_keys_that_expire_before_it(make_backend: Factory, etcd_own: EtcdCluster) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    session = backend.open_session(30)
    assert isinstance(session, TtlSession)
    # 400 keys due within 0.4 s: the workers take them earliest expiry first,
    # so a refresh reaches etcd at most as many places out of order as there
    # are refreshes in flight (rounds cut into contiguous chunks put the first
    # key of the last chunk hundreds of places early).
    by_expiry, by_refresh = refresh_order(backend, session, 400)
    displacement = max(abs(by_refresh.index(key) - rank) for rank, key in enumerate(by_expiry))
    assert displacement < REFRESH_WORKERS, displacement
    session.close()


def test_a_session_past_what_it_sustains_warns_with_the_figures(
    make_backend: Factory, etcd_own: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    # One refresh in flight and a 3 s TTL: 5,000 keys need 5,000 refreshes a
    # second, more than one connection carries (a write commits in about half a
    # millisecond at best). Keys that expire (below 5,000 / 3 a second) are not
    # put again here, but the rest still need more than the session sustains.
    session = TtlSession(backend, 3, workers=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RefreshCapacityWarning)
        put_all(backend, [f"over/a/h{n:04}" for n in range(5000)], session)
        wait_until(lambda: session.overloaded, timeout=30, message="the session never found itself overloaded")
        wait_until(
            lambda: any(issubclass(w.category, RefreshCapacityWarning) for w in caught),
            timeout=10,
            message="no RefreshCapacityWarning",
        )
    capacity = session.refresh_capacity
    assert capacity is not None and capacity < session.refresh_demand
    (warning,) = [w for w in caught if issubclass(w.category, RefreshCapacityWarning)][:1]
    text = str(warning.message)
    assert "refreshes/s (N x 3 / ttl)" in text and "sustains about" in text and "use a ttl of at least" in text
    assert any(text == record.getMessage() for record in caplog.records), "the warning is logged as well"
    assert session.alive, "an overloaded session goes on: it warns, it does not fail"
    session.close()


def test_a_session_whose_server_is_gone_for_a_ttl_is_lost_after_a_few_requests(
    make_backend: Factory, etcd_own: EtcdCluster
) -> None:
    backend = make_backend(Etcd2Backend, etcd_own, timeout=1.0)
    session = backend.open_session(2)
    assert isinstance(session, TtlSession)
    put_all(backend, [f"gone/a/h{n:03}" for n in range(500)], session)
    heard: list[bool] = []
    session.add_listener(heard.append)
    (member,) = etcd_own.members
    before = session.keepalive_requests
    member.kill()
    try:
        wait_until(lambda: heard == [False], timeout=20, message="the session outlived its server")
        # A pause after each failure: not a request per key and retry.
        assert session.keepalive_requests - before < 250, session.keepalive_requests - before
    finally:
        member.restart()
        etcd_own.wait_healthy()


# -- refreshes over TLS and with credentials (the refresh workers' own HTTP connections) ---------------


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A one-member etcd serving its clients over TLS with client certificate authentication."""
    files = make_test_certificates(Path(tmp_path_factory.mktemp("etcd2-tls")))
    with EtcdCluster(members=1, tls=files) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdCluster]:
    """A one-member etcd with authentication on (user ``root``, password ``pw``)."""
    with EtcdCluster(members=1) as cluster:
        cluster.enable_auth("pw")
        yield cluster


def keeps_keys_alive(backend: Etcd2Backend, count: int, ttl: float, *, rounds: int = 4) -> int:
    """Hold ``count`` keys until each was refreshed ``rounds`` times, with a watch open; the failed refreshes."""
    session = backend.open_session(ttl)
    assert isinstance(session, TtlSession)
    for n in range(count):
        backend.put(f"svc/a/h{n}", owned(session), session)
    stream = backend.watch("svc/", None)
    try:
        # Each key refreshed a few times: past the watch's quiet time before the checker probes its member.
        wait_until(
            lambda: session.keepalive_requests - session.keepalive_failures >= rounds * count,
            timeout=60,
            message="no refreshes",
        )
        assert session.alive
        assert len(backend.list("svc/").records) == count
        # The watch's checker has probed its member meanwhile, with the credentials if any.
        assert stream.next(0.2) is None
        written = backend.put("svc/a/late", owned(session), session)
        item = wait_until(lambda: stream.next(0.5), timeout=10, message="no event")
        assert isinstance(item, Batch) and item.revision == written
        assert [c.kind for c in item.changes] == [ChangeKind.PUT]
    finally:
        stream.close()
        session.close()
    assert backend.list("svc/").records == ()
    return session.keepalive_failures


def test_refreshes_over_tls_with_a_client_certificate(tls_etcd: EtcdCluster) -> None:
    assert tls_etcd.tls is not None
    backend = own_backend(tls_etcd, "https", timeout=1.0, **tls_etcd.tls.url_options())
    try:
        assert keeps_keys_alive(backend, 20, 1) == 0
    finally:
        backend.close()


def test_refreshes_and_watch_checks_with_credentials(auth_etcd: EtcdCluster) -> None:
    # etcd v2 checks the password (bcrypt) at every request, about 80 ms of its CPU each (more on a busy
    # host): few keys, a TTL that outlives a slow answer, and a checker that probes every 2 s.
    backend = own_backend(auth_etcd, user="root", password="pw", timeout=2.0)
    try:
        keeps_keys_alive(backend, 2, 6, rounds=2)
    finally:
        backend.close()
