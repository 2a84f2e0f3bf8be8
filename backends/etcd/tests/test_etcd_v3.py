"""The etcd v3 backend against a real etcd 3.4: keys, leases, ownership, watches, compaction, failures."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

import discovery
from discovery.backend import Batch, ChangeKind, Gap, Session
from discovery.errors import AlreadyRegistered, BackendError, BackendUnavailable, InvalidValue
from discovery.servers import EtcdCluster, free_ports
from discovery.testing.waiting import wait_until
from discovery_etcd import EtcdBackend
from discovery_etcd._v3 import LeaseSession

Collect = Callable[..., tuple[list[Batch], Gap | None]]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def owned(session: Session, extra: str = "") -> bytes:
    return f'{{"registrant":"{session.id}"{extra}}}'.encode()


def test_session_ttl_honours_etcd_minimum(v3: EtcdBackend) -> None:
    session = v3.open_session(0.5)
    assert isinstance(session, LeaseSession)
    assert session.granted_ttl >= EtcdBackend.min_ttl
    session.close()


def test_lease_revoked_behind_the_session_turns_it_dead(v3: EtcdBackend, etcd_cluster: EtcdCluster) -> None:
    session = v3.open_session(2)
    assert isinstance(session, LeaseSession)
    heard: list[bool] = []
    session.add_listener(heard.append)
    v3.put("svc/a/h1", owned(session), session)
    etcd_cluster.request("/v3/lease/revoke", {"ID": session.id})
    wait_until(lambda: not session.alive, timeout=10, message="session never noticed its lease was revoked")
    assert heard == [False]
    assert v3.list("svc/").records == ()
    session.close()


def test_lease_revoke_is_one_batch_of_fifty_deletes(v3: EtcdBackend, read_stream: Collect) -> None:
    session = v3.open_session(10)
    for n in range(50):
        v3.put(f"svc/a/h{n:02}", b"{}", session)
    stream = v3.watch("svc/", None)
    session.close()
    batches, gap = read_stream(stream, lambda got: len(got) >= 1)
    assert gap is None
    assert stream.next(0.5) is None
    stream.close()
    (batch,) = batches
    assert len(batch.changes) == 50
    assert {change.kind for change in batch.changes} == {ChangeKind.DELETE}
    assert {change.mod_revision for change in batch.changes} == {batch.revision}
    assert {change.key for change in batch.changes} == {f"svc/a/h{n:02}" for n in range(50)}


def test_plain_client_keys_are_records_and_events(v3: EtcdBackend, etcd_cluster: EtcdCluster, root: str) -> None:
    stream = v3.watch("nodes/", None)
    etcd_cluster.request("/v3/kv/put", {"key": b64(f"{root}/nodes/n1"), "value": b64("1")})
    (record,) = v3.list("nodes/").records
    assert (record.key, record.value) == ("nodes/n1", b"1")
    item = wait_until(lambda: stream.next(0.5), timeout=10, message="no event for the plain put")
    assert isinstance(item, Batch)
    assert [(c.key, c.value) for c in item.changes] == [("nodes/n1", b"1")]
    stream.close()


def test_failover_skips_a_dead_endpoint(
    make_backend: Callable[..., Any], etcd_cluster: EtcdCluster, read_stream: Collect
) -> None:
    (dead,) = free_ports(1)
    live = etcd_cluster.client_urls[0].removeprefix("http://").rpartition(":")[2]
    hosts = (("127.0.0.1", dead), ("127.0.0.1", int(live)))
    backend = make_backend(EtcdBackend, etcd_cluster, hosts=hosts, timeout=2.0)
    assert backend.list("").records == ()
    assert backend.client.endpoint.endswith(f":{live}")
    stream = backend.watch("svc/", None)
    session = backend.open_session(2)
    backend.put("svc/a/h1", b"{}", session)
    batches, _ = read_stream(stream, lambda got: len(got) >= 1)
    assert batches[0].changes[0].key == "svc/a/h1"
    stream.close()
    session.close()
    fresh = make_backend(EtcdBackend, etcd_cluster, hosts=hosts, timeout=2.0)
    watch_first = fresh.watch("svc/", None)
    assert watch_first.next(0.1) is None
    watch_first.close()


def test_compaction_past_the_stream_position_is_a_gap(
    make_backend: Callable[..., Any], etcd_own: EtcdCluster, read_stream: Collect
) -> None:
    backend = make_backend(EtcdBackend, etcd_own)
    old = backend.put("svc/a/h1", b"1", None)
    for n in range(5):
        backend.put("svc/a/h1", str(n).encode(), None)
    lagging = backend.watch("svc/", old)
    first, _ = read_stream(lagging, lambda got: len(got) >= 1)
    assert first[0].revision == old + 1
    etcd_own.compact()
    lagging.close()
    resumed = backend.watch("svc/", first[0].revision)
    assert wait_until(lambda: resumed.next(0.5), timeout=10, message="no answer after compaction") == Gap("compacted")
    assert resumed.next(0) == Gap("compacted")
    resumed.close()


def test_broken_stream_raises_then_resumes_without_loss(
    make_backend: Callable[..., Any], etcd_own: EtcdCluster, read_stream: Collect
) -> None:
    backend = make_backend(EtcdBackend, etcd_own)
    stream = backend.watch("svc/", None)
    backend.put("svc/a/h1", b"before", None)
    batches, _ = read_stream(stream, lambda got: len(got) >= 1)
    last = batches[-1].revision
    etcd_own.members[0].kill()
    with pytest.raises(BackendUnavailable):
        wait_until(lambda: stream.next(0.5), timeout=10, message="the broken stream never raised")
    stream.close()
    etcd_own.members[0].restart()
    after = backend.put("svc/a/h2", b"while no stream was open", None)
    resumed = backend.watch("svc/", last)
    batches, gap = read_stream(resumed, lambda got: len(got) >= 1)
    assert gap is None
    assert [(c.key, c.mod_revision) for b in batches for c in b.changes] == [("svc/a/h2", after)]
    resumed.close()


def test_connect_through_the_entry_point(etcd_cluster: EtcdCluster, root: str) -> None:
    assert discovery.available_backends().count("etcd") == 1
    with discovery.connect(etcd_cluster.url("etcd", root)) as registry:
        assert isinstance(registry.backend, EtcdBackend)
        assert registry.backend.server_version().startswith("3.")
        with registry.watch("buzz") as watch:
            lease = registry.register("buzz/api", "h1", address="10.0.0.5", port=8080, ttl=2)
            event = watch.get(10)
            assert event is not None and event.instance_id == "h1"
            lease.close()
            event = watch.get(10)
            assert event is not None and event.kind is discovery.EventKind.REMOVED


def test_unreachable_server_is_backend_unavailable(make_backend: Callable[..., Any], etcd_cluster: EtcdCluster) -> None:
    (port,) = free_ports(1)
    backend = make_backend(EtcdBackend, etcd_cluster, hosts=(("127.0.0.1", port),), timeout=1.0)
    with pytest.raises(BackendUnavailable) as caught:
        backend.list("")
    assert caught.value.orig is not None
    assert caught.value.__cause__ is caught.value.orig


def test_member_death_fails_over(
    make_backend: Callable[..., Any], etcd_own3: EtcdCluster, read_stream: Collect
) -> None:
    backend = make_backend(EtcdBackend, etcd_own3, timeout=2.0)
    session = backend.open_session(3)
    backend.put("svc/a/h1", b"{}", session)
    first = backend.client.endpoint
    stream = backend.watch("svc/", None)
    victim = next(m for m in etcd_own3.members if first.endswith(f":{m.client_port}"))
    victim.kill()
    try:
        with pytest.raises(BackendUnavailable):
            wait_until(lambda: stream.next(0.5), timeout=10, message="the stream on the dead member never raised")
        stream.close()
        revision = backend.put("svc/a/h2", b"{}", session)
        assert backend.client.endpoint != first
        assert {record.key for record in backend.list("svc/").records} == {"svc/a/h1", "svc/a/h2"}
        resumed = backend.watch("svc/", revision - 1)
        batches, _ = read_stream(resumed, lambda got: len(got) >= 1)
        assert batches[0].revision == revision
        resumed.close()
        assert session.alive
    finally:
        victim.restart()
    session.close()


def test_member_without_quorum_ends_its_watch(make_backend: Callable[..., Any], etcd_own3: EtcdCluster) -> None:
    etcd_own3.wait_healthy()
    member = etcd_own3.members[0]
    backend = make_backend(EtcdBackend, etcd_own3, hosts=(("127.0.0.1", member.client_port),), timeout=2.0)
    stream = backend.watch("svc/", None)
    others = etcd_own3.members[1:]
    for other in others:
        other.pause()
    try:
        # The watch requires a leader: cut off from the others, the member ends it.
        with pytest.raises(BackendUnavailable):
            wait_until(lambda: stream.next(0.5), timeout=20, message="the watch on a member without quorum went on")
    finally:
        for other in others:
            other.resume()
    stream.close()
    etcd_own3.wait_healthy()


def test_repeating_a_session_write_changes_nothing(v3: EtcdBackend) -> None:
    session = v3.open_session(2)
    assert isinstance(session, LeaseSession)
    first = v3.put("svc/a/h1", owned(session), session)
    stream = v3.watch("svc/", None)
    assert v3.put("svc/a/h1", owned(session), session) == first
    assert stream.next(0.5) is None
    stream.close()
    session.close()


def test_stopped_member_ends_the_watch_and_the_next_one_moves_on(
    make_backend: Callable[..., Any], etcd_own3: EtcdCluster, read_stream: Collect
) -> None:
    etcd_own3.wait_healthy()
    backend = make_backend(EtcdBackend, etcd_own3, timeout=1.0)
    position = backend.put("svc/a/h0", b"0", None)
    stream = backend.watch("svc/", None)
    stopped = next(m for m in etcd_own3.members if backend.client.endpoint.endswith(f":{m.client_port}"))
    stopped.pause()
    try:
        with pytest.raises(BackendUnavailable):
            wait_until(lambda: stream.next(0.5), timeout=15, message="the watch on a stopped member went on")
        stream.close()
        written = wait_until(
            lambda: backend.put("svc/a/h1", b"1", None), timeout=15, ignore=(BackendError,), message="no write"
        )
        resumed = backend.watch("svc/", position)
        batches, gap = read_stream(resumed, lambda got: len(got) >= 1)
        assert gap is None
        assert [(c.key, c.mod_revision) for b in batches for c in b.changes] == [("svc/a/h1", written)]
        resumed.close()
    finally:
        stopped.resume()
    etcd_own3.wait_healthy()


def test_put_many_is_one_transaction_at_one_revision_or_nothing(v3: EtcdBackend) -> None:
    session = v3.open_session(10)
    items = [(f"bulk/i{n}", b'{"port":1}') for n in range(v3.max_batch)]
    revisions = v3.put_many(items, session)
    assert len(set(revisions)) == 1
    listing = v3.list("bulk/")
    assert {r.key for r in listing.records} == {key for key, _ in items}
    assert {r.mod_revision for r in listing.records} == {revisions[0]}
    other = v3.open_session(10)
    v3.put("bulk/taken", b"{}", other)
    with pytest.raises(AlreadyRegistered):
        v3.put_many([("bulk/x", b"{}"), ("bulk/taken", b"{}"), ("bulk/y", b"{}")], session)
    keys = {r.key for r in v3.list("bulk/").records}
    assert "bulk/x" not in keys and "bulk/y" not in keys
    with pytest.raises(InvalidValue):
        v3.put_many([(f"bulk/z{n}", b"{}") for n in range(v3.max_batch + 1)], session)
