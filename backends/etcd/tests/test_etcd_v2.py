"""The etcd v2 backend against a real etcd 3.4 (``--enable-v2=true``): TTL keys, ownership, watches, the window."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import etcd
import pytest

import discovery
from discovery.backend import Batch, ChangeKind, Gap, Session
from discovery.errors import (
    BackendError,
    BackendUnavailable,
    InvalidValue,
    SessionExpired,
    Unsupported,
)
from discovery.servers import EtcdCluster, free_ports
from discovery.testing.waiting import wait_until
from discovery_etcd import Etcd2Backend
from discovery_etcd._errors import V2_DISABLED
from discovery_etcd._v2 import _CATCH_UP_EVENTS, owned_text, stored_owner, unowned
from discovery_etcd._v2_session import TtlSession

Collect = Callable[..., tuple[list[Batch], Gap | None]]


def owned(session: Session, extra: str = "") -> bytes:
    return f'{{"registrant":"{session.id}"{extra}}}'.encode()


def raw_client(cluster: EtcdCluster) -> etcd.Client:
    host, _, port = cluster.client_urls[0].removeprefix("http://").rpartition(":")
    return etcd.Client(host=host, port=int(port), read_timeout=5)


def test_underscore_names_are_stored_visibly(v2: Etcd2Backend, etcd_cluster: EtcdCluster, root: str) -> None:
    v2.put("buzz/api/_definition", b'{"min_instances":2}', None)
    assert [record.key for record in v2.list("buzz/").records] == ["buzz/api/_definition"]
    assert raw_client(etcd_cluster).read(f"{root}/buzz/api/~_definition").value == '{"min_instances":2}'


def test_refresh_keeps_keys_past_the_ttl(v2: Etcd2Backend) -> None:
    session = v2.open_session(1)
    v2.put("svc/a/h1", b"{}", session)
    deadline = time.monotonic() + 3 * 1 + 1
    while time.monotonic() < deadline:
        assert session.alive
        assert [record.key for record in v2.list("svc/").records] == ["svc/a/h1"]
        time.sleep(0.2)
    session.close()


def test_many_keys_are_refreshed_by_workers_and_none_expires(v2: Etcd2Backend) -> None:
    session = v2.open_session(2)
    assert isinstance(session, TtlSession)
    count = 400  # more than one tick's worth for the session's own thread: the workers share them
    for n in range(count):
        v2.put(f"svc/a/h{n}", owned(session), session)
    stream = v2.watch("svc/", None)
    try:
        refreshed_past = v2.list("").revision + 2 * count
        wait_until(
            lambda: v2.list("").revision > refreshed_past,
            timeout=30,
            message="the keys were not refreshed twice over",
        )
        assert session.alive
        assert len(v2.list("svc/").records) == count
        assert stream.next(0.2) is None, "a refreshed key changed or expired"
    finally:
        stream.close()
    session.close()
    assert v2.list("svc/").records == ()


def test_a_write_that_lands_after_the_session_ended_is_undone(v2: Etcd2Backend) -> None:
    session = v2.open_session(2)
    assert isinstance(session, TtlSession)
    v2.put("svc/a/h1", owned(session), session)
    session._end()  # the refresh thread losing the session while a put is under way
    assert session.alive
    with pytest.raises(SessionExpired):
        v2.put("svc/a/h2", owned(session), session)
    assert [record.key for record in v2.list("svc/").records] == ["svc/a/h1"]
    session.close()
    assert v2.list("svc/").records == ()


def test_a_key_gone_behind_the_session_is_reported_alone(
    v2: Etcd2Backend, etcd_cluster: EtcdCluster, root: str
) -> None:
    session = v2.open_session(2)
    assert isinstance(session, TtlSession)
    heard: list[bool] = []
    gone: list[str] = []
    session.add_listener(heard.append)
    session.add_key_listener(gone.append)
    v2.put("svc/a/h1", owned(session), session)
    kept = v2.put("svc/a/h2", owned(session), session)
    raw_client(etcd_cluster).delete(f"{root}/svc/a/h1")
    wait_until(lambda: gone, timeout=10, message="the session never noticed its key was gone")
    assert gone == ["svc/a/h1"]
    assert session.alive and heard == []
    assert list(session.held()) == [f"{root}/svc/a/h2"]
    (record,) = v2.list("svc/").records
    assert (record.key, record.create_revision) == ("svc/a/h2", kept)
    session.close()
    assert v2.list("svc/").records == ()


def test_a_registration_whose_key_vanished_is_put_again_alone(etcd_cluster: EtcdCluster, root: str) -> None:
    with discovery.connect(etcd_cluster.url("etcd2", root)) as registry:
        changes: list[bool] = []
        lost = registry.register("svc", "h1", meta={"v": 1}, ttl=2)
        lost.on_change(lambda _, alive: changes.append(alive))
        sibling = registry.register("svc", "h2", ttl=2)
        (before,) = [i for i in registry.instances("svc") if i.id == "h2"]
        with registry.watch("svc") as watch:
            raw_client(etcd_cluster).delete(f"{root}/svc/h1")
            removed, added = watch.get(10), watch.get(10)
            assert removed is not None and (removed.kind, removed.instance_id) == (discovery.EventKind.REMOVED, "h1")
            assert added is not None and (added.kind, added.instance_id) == (discovery.EventKind.ADDED, "h1")
            assert added.instance is not None and added.instance.meta == {"v": 1}
            wait_until(lambda: changes == [False, True], timeout=10, message="h1's state changes were not reported")
            assert watch.get(0.5) is None, "the sibling was touched"
        assert lost.alive and sibling.alive
        (after,) = [i for i in registry.instances("svc") if i.id == "h2"]
        assert after.revision == before.revision


def test_values_that_are_not_utf8(v2: Etcd2Backend) -> None:
    v2.put("svc/a/h1", b"\xff\xfe raw", None)
    (record,) = v2.list("svc/").records
    assert record.value == "\ufffd\ufffd raw".encode()
    session = v2.open_session(2)
    with pytest.raises(InvalidValue):
        v2.put("svc/a/h2", b"\xff", session)
    session.close()


@pytest.mark.parametrize("value", ["{}", '{"a":1}', '{ "a": [1, {"b": "}"}] }', '{"registrant":"x","port":1}'])
def test_the_owner_field_comes_off_exactly_as_it_went_on(value: str) -> None:
    stored = owned_text("0123abcd", value)
    assert json.loads(stored) == {**json.loads(value), "registrant": "0123abcd"} or "registrant" in value
    assert stored_owner(stored) == "0123abcd"
    assert unowned(stored) == value


def test_a_session_key_names_its_owner_in_etcd_and_reads_back_as_written(
    v2: Etcd2Backend, read_stream: Collect, etcd_cluster: EtcdCluster, root: str
) -> None:
    session = v2.open_session(5)
    value = b'{"address":"10.0.0.1","meta":{},"port":80}'
    revision = v2.put("svc/a/h1", value, session)
    stored = raw_client(etcd_cluster).read(f"{root}/svc/a/h1").value
    assert json.loads(stored) == {"registrant": session.id, **json.loads(value)}
    assert [r.value for r in v2.list("svc/").records] == [value]
    v2.put("svc/a/h1", value.replace(b"80", b"81"), session)
    batches, _ = read_stream(v2.watch("svc/", revision), lambda batches: len(batches) >= 1)
    assert batches[0].changes[0].value == value.replace(b"80", b"81")
    for not_an_object in (b"plain text", b"[1, 2]", b'"text"'):
        with pytest.raises(InvalidValue, match="JSON object"):
            v2.put("svc/a/h2", not_an_object, session)
    session.close()


def test_watch_tells_expiry_from_delete(v2: Etcd2Backend, read_stream: Collect) -> None:
    stream = v2.watch("svc/", None)
    session = v2.open_session(1)
    created = v2.put("svc/a/h1", b"v1", None)
    updated = v2.put("svc/a/h1", b"v2", None)
    v2.delete("svc/a/h1")
    v2.put("svcx/a/h1", b"not under the prefix", None)
    v2.put("svc/a/h2", owned(session), session)
    assert isinstance(session, TtlSession)
    session.stop()
    batches, gap = read_stream(stream, lambda got: len(got) >= 5)
    assert gap is None
    stream.close()
    changes = [change for batch in batches for change in batch.changes]
    assert [(c.kind, c.key, c.value, c.expired) for c in changes] == [
        (ChangeKind.PUT, "svc/a/h1", b"v1", None),
        (ChangeKind.PUT, "svc/a/h1", b"v2", None),
        (ChangeKind.DELETE, "svc/a/h1", None, False),
        (ChangeKind.PUT, "svc/a/h2", owned(session), None),
        (ChangeKind.DELETE, "svc/a/h2", None, True),
    ]
    assert (changes[1].create_revision, changes[1].mod_revision) == (created, updated)
    assert all(len(batch.changes) == 1 and batch.revision == batch.changes[0].mod_revision for batch in batches)


def test_removed_directory_is_a_gap(
    v2: Etcd2Backend, etcd_cluster: EtcdCluster, root: str, read_stream: Collect
) -> None:
    v2.put("svc/a/h1", b"1", None)
    stream = v2.watch("svc/", None)
    raw_client(etcd_cluster).delete(f"{root}/svc/a", recursive=True)
    _, gap = read_stream(stream, lambda got: False)
    assert gap == Gap("directory-removed")
    stream.close()


def test_plain_client_keys_are_records_and_events(
    v2: Etcd2Backend, etcd_cluster: EtcdCluster, root: str, read_stream: Collect
) -> None:
    stream = v2.watch("nodes/", None)
    raw_client(etcd_cluster).write(f"{root}/nodes/n1", 1, ttl=10)
    (record,) = v2.list("nodes/").records
    assert (record.key, record.value) == ("nodes/n1", b"1")
    batches, _ = read_stream(stream, lambda got: len(got) >= 1)
    assert [(c.key, c.value) for c in batches[0].changes] == [("nodes/n1", b"1")]
    stream.close()


def test_history_window_passed_by_writes_is_a_gap(
    make_backend: Callable[..., Any], etcd_own: EtcdCluster, read_stream: Collect
) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    position = backend.put("svc/a/h1", b"1", None)
    for n in range(1010):
        backend.put("flood/a/b", str(n).encode(), None)
    stream = backend.watch("svc/", position)
    _, gap = read_stream(stream, lambda got: False)
    assert gap == Gap("history-window")
    assert stream.next(0) == Gap("history-window")
    stream.close()


def test_a_long_history_is_replayed_no_further_than_the_catch_up_limit(
    make_backend: Callable[..., Any], etcd_own: EtcdCluster, read_stream: Collect
) -> None:
    # Within etcd's window, but longer than a streamed watch's buffer lasts on a busy server:
    # the stream replays the first events, then asks for a resync.
    backend = make_backend(Etcd2Backend, etcd_own)
    position = backend.put("svc/a/h0", b"0", None)
    written = [backend.put("svc/a/h1", str(n).encode(), None) for n in range(1, 101)]
    stream = backend.watch("svc/", position)
    batches, gap = read_stream(stream, lambda got: False)
    assert gap == Gap("catch-up")
    assert [batch.revision for batch in batches] == written[:_CATCH_UP_EVENTS]
    stream.close()


def test_history_window_passed_by_refreshes_alone_is_a_gap(
    make_backend: Callable[..., Any], etcd_own: EtcdCluster
) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    session = backend.open_session(1)
    for n in range(200):
        backend.put(f"svc/a/h{n:03}", b"{}", session)
    position = backend.list("svc/").revision
    live = backend.watch("svc/", position)
    # Refreshes advance etcd's index (each takes a place in the history) but are no events.
    wait_until(
        lambda: backend.list("").revision > position + 1100,
        timeout=30,
        message="refreshes did not advance the index",
    )
    assert live.next(0.2) is None
    assert {record.mod_revision for record in backend.list("svc/").records} <= set(range(position + 1))
    reopened = backend.watch("svc/", position)
    assert wait_until(lambda: reopened.next(0.5), timeout=10, message="no gap") == Gap("history-window")
    reopened.close()
    live.close()
    session.close()


def test_idle_stream_keeps_up_with_refresh_traffic(make_backend: Callable[..., Any], etcd_own: EtcdCluster) -> None:
    backend = make_backend(Etcd2Backend, etcd_own)
    session = backend.open_session(3)
    for n in range(150):
        backend.put(f"busy/a/h{n:03}", b"{}", session)
    stream = backend.watch("quiet/", None)
    position = backend.list("").revision
    # About 150 refreshes a second: more than the window passes during the wait,
    # but less than the window during one quiet long poll, which the stream
    # follows with a poll from the index that one started at.
    wait_until(lambda: backend.list("").revision > position + 1600, timeout=60, message="index did not advance")
    written = backend.put("quiet/a/h1", b"1", None)
    item = wait_until(lambda: stream.next(0.5), timeout=15, message="no event")
    assert isinstance(item, Batch) and item.revision == written
    stream.close()
    session.close()


def test_v2_disabled_is_unsupported(make_backend: Callable[..., Any]) -> None:
    with EtcdCluster(members=1, enable_v2=False) as cluster:
        backend = make_backend(Etcd2Backend, cluster)
        with pytest.raises(Unsupported) as caught:
            backend.list("")
        assert V2_DISABLED in str(caught.value)
        with pytest.raises(Unsupported):
            backend.watch("", None)
        stream = backend.watch("", 1)
        with pytest.raises(Unsupported):
            wait_until(lambda: stream.next(0.5), timeout=10)
        stream.close()


def test_failover_skips_a_dead_endpoint(
    make_backend: Callable[..., Any], etcd_cluster: EtcdCluster, read_stream: Collect
) -> None:
    (dead,) = free_ports(1)
    live = int(etcd_cluster.client_urls[0].rpartition(":")[2])
    backend = make_backend(Etcd2Backend, etcd_cluster, hosts=(("127.0.0.1", dead), ("127.0.0.1", live)), timeout=2.0)
    stream = backend.watch("svc/", None)
    session = backend.open_session(2)
    backend.put("svc/a/h1", owned(session), session)
    assert [record.key for record in backend.list("svc/").records] == ["svc/a/h1"]
    batches, _ = read_stream(stream, lambda got: len(got) >= 1)
    assert batches[0].changes[0].key == "svc/a/h1"
    stream.close()
    session.close()


def test_unreachable_server_is_backend_unavailable(make_backend: Callable[..., Any], etcd_cluster: EtcdCluster) -> None:
    (port,) = free_ports(1)
    backend = make_backend(Etcd2Backend, etcd_cluster, hosts=(("127.0.0.1", port),), timeout=1.0)
    with pytest.raises(BackendUnavailable) as caught:
        backend.list("")
    assert caught.value.orig is not None
    assert caught.value.__cause__ is caught.value.orig


def test_connect_through_the_entry_point(etcd_cluster: EtcdCluster, root: str) -> None:
    with discovery.connect(etcd_cluster.url("etcd2", root)) as registry:
        assert isinstance(registry.backend, Etcd2Backend)
        registry.define("buzz/api", min_instances=1)
        with registry.watch("buzz") as watch:
            lease = registry.register("buzz/api", "h1", address="10.0.0.5", port=8080, ttl=2)
            event = watch.get(10)
            assert event is not None and event.instance_id == "h1"
            assert [instance.id for instance in registry.instances("buzz/api")] == ["h1"]
            lease.close()
            event = watch.get(10)
            assert event is not None and event.kind is discovery.EventKind.REMOVED


def test_member_death_loses_nothing(make_backend: Callable[..., Any], etcd_own3: EtcdCluster) -> None:
    etcd_own3.wait_healthy()
    backend = make_backend(Etcd2Backend, etcd_own3, timeout=2.0)
    session = backend.open_session(3)
    first = backend.put("svc/a/h1", owned(session), session)
    stream = backend.watch("svc/", first)
    victim = next(m for m in etcd_own3.members if backend.endpoints.preferred.endswith(f":{m.client_port}"))
    victim.kill()
    try:
        second = wait_until(
            lambda: backend.put("svc/a/h2", owned(session), session),
            timeout=15,
            ignore=(BackendUnavailable,),
            message="no write after the member died",
        )
        assert {record.key for record in backend.list("svc/").records} == {"svc/a/h1", "svc/a/h2"}
        # A long poll is a request at an explicit index: one that fails to
        # connect moves to the next member inside the stream; one broken
        # mid-way raises, and the consumer reopens from its position.
        seen: list[tuple[str, int]] = []
        position = first
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            try:
                item = stream.next(0.5)
            except BackendUnavailable:
                stream.close()
                stream = backend.watch("svc/", position)
                continue
            if isinstance(item, Batch):
                seen += [(c.key, c.mod_revision) for c in item.changes]
                position = item.revision
        assert seen == [("svc/a/h2", second)]
        assert session.alive
    finally:
        stream.close()
        victim.restart()
    session.close()


def test_repeating_a_session_write_changes_nothing(v2: Etcd2Backend) -> None:
    session = v2.open_session(2)
    assert isinstance(session, TtlSession)
    first = v2.put("svc/a/h1", owned(session), session)
    stream = v2.watch("svc/", None)
    assert v2.put("svc/a/h1", owned(session), session) == first
    assert stream.next(0.5) is None
    stream.close()
    session.close()


def test_listing_ignores_refreshes(
    make_backend: Callable[..., Any], etcd_cluster: EtcdCluster, v2: Etcd2Backend
) -> None:
    session = v2.open_session(1)
    written = v2.put("svc/a/h1", owned(session), session)
    reader = make_backend(Etcd2Backend, etcd_cluster)
    (seen,) = reader.list("svc/").records
    wait_until(lambda: reader.list("").revision > seen.mod_revision + 3, timeout=10, message="no refresh happened")
    (again,) = reader.list("svc/").records
    assert again.mod_revision == seen.mod_revision >= written
    assert [r.mod_revision for r in v2.list("svc/").records] == [written]
    session.close()


def test_a_stalled_member_costs_a_refresh_interval_not_the_keys(
    make_backend: Callable[..., Any], etcd_own3: EtcdCluster
) -> None:
    # The backend's timeout (5 s) is longer than the ttl (2 s): a refresh waiting that long on
    # the paused member would let every key expire. It waits a refresh interval, then asks another.
    etcd_own3.wait_healthy()
    backend = make_backend(Etcd2Backend, etcd_own3)
    assert backend.settings.timeout > 2
    session = backend.open_session(2)
    assert isinstance(session, TtlSession)
    gone: list[str] = []
    session.add_key_listener(gone.append)
    written = [backend.put(f"svc/a/h{i}", owned(session), session) for i in range(3)]
    stalled = next(m for m in etcd_own3.members if backend.endpoints.preferred.endswith(f":{m.client_port}"))
    stalled.pause()
    try:
        renewed_before = session.keepalive_requests - session.keepalive_failures
        # Two ttls' worth of successful refreshes of the 3 keys while the member stays paused.
        wait_until(
            lambda: session.keepalive_requests - session.keepalive_failures >= renewed_before + 3 * 6,
            timeout=30,
            message="refreshes did not go on through another member",
        )
        healthy = [m for m in etcd_own3.members if m is not stalled]
        reader = make_backend(Etcd2Backend, etcd_own3, hosts=(("127.0.0.1", healthy[0].client_port),))
        records = reader.list("svc/").records
    finally:
        stalled.resume()
    assert gone == [] and session.alive
    assert sorted((r.key, r.create_revision) for r in records) == [(f"svc/a/h{i}", written[i]) for i in range(3)]
    etcd_own3.wait_healthy()


def test_stopped_member_is_left_behind(make_backend: Callable[..., Any], etcd_own3: EtcdCluster) -> None:
    etcd_own3.wait_healthy()
    backend = make_backend(Etcd2Backend, etcd_own3, timeout=1.0)
    position = backend.put("svc/a/h0", b"0", None)
    stream = backend.watch("svc/", position)
    stopped = next(m for m in etcd_own3.members if backend.endpoints.preferred.endswith(f":{m.client_port}"))
    stopped.pause()
    try:
        written = wait_until(
            lambda: backend.put("svc/a/h1", b"1", None), timeout=15, ignore=(BackendError,), message="no write"
        )
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            try:
                item = stream.next(0.5)
            except BackendError:
                stream.close()
                stream = backend.watch("svc/", position)
                continue
            if isinstance(item, Batch):
                seen += [(c.key, c.mod_revision) for c in item.changes]
        assert seen == [("svc/a/h1", written)]
    finally:
        stream.close()
        stopped.resume()
    etcd_own3.wait_healthy()
