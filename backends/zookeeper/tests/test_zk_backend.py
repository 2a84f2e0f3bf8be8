"""The ZooKeeper backend's primitives against a real ZooKeeper 3.8: keys, fencing, listings, streams."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

import discovery
from discovery._plugins import load_backend
from discovery.backend import Change, ChangeKind, ChangeStream, Gap, Target
from discovery.capabilities import Capability
from discovery.errors import (
    AlreadyRegistered,
    AuthenticationFailed,
    BackendUnavailable,
    InvalidOption,
    SessionExpired,
    Unsupported,
)
from discovery.servers import ZooKeeperCluster, free_ports
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend, ZooKeeperSession
from discovery_zookeeper import _stream as zookeeper_stream

BackendFactory = Callable[..., ZooKeeperBackend]
Collector = Callable[[ChangeStream, Callable[[list[Change]], bool]], list[Change]]


def test_plugin_names_options_and_capabilities() -> None:
    assert load_backend("zookeeper") is ZooKeeperBackend
    assert load_backend("zk") is ZooKeeperBackend
    assert ZooKeeperBackend.name == "zookeeper"
    assert ZooKeeperBackend.default_port == 2181
    assert ZooKeeperBackend.capabilities == frozenset({Capability.NATIVE_EPHEMERAL})
    options = ZooKeeperBackend.options
    assert (options["session_timeout"].kind, options["session_timeout"].default) == (float, 10.0)
    assert (options["connect_timeout"].kind, options["connect_timeout"].default) == (float, 10.0)
    assert (options["request_timeout"].kind, options["request_timeout"].default) == (float, 10.0)
    assert (options["auth_digest"].kind, options["auth_digest"].default) == (str, "")
    assert {name: options[name].kind for name in ("use_ssl", "ca", "certfile", "keyfile", "verify_certs")} == {
        "use_ssl": bool,
        "ca": str,
        "certfile": str,
        "keyfile": str,
        "verify_certs": bool,
    }


def test_connect_creates_the_root_and_reports_the_version(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str, zookeeper_cluster: object
) -> None:
    assert kazoo_client.exists(root) is not None
    version = backend.server_version()
    assert re.fullmatch(r"3\.\d+\.\d+", version)
    if isinstance(zookeeper_cluster, ZooKeeperCluster):
        assert version == zookeeper_cluster.version()


def test_unreachable_servers_raise_backend_unavailable(make_target: Callable[..., Target]) -> None:
    (port,) = free_ports(1)
    with pytest.raises(BackendUnavailable):
        ZooKeeperBackend(make_target(f"127.0.0.1:{port}", "/nowhere", connect_timeout=1.0))


def test_persistent_put_overwrites_and_lists(backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str) -> None:
    first = backend.put("buzz/api/_definition", b'{"min_instances":1}', None)
    second = backend.put("buzz/api/_definition", b'{"min_instances":2}', None)
    assert second > first
    data, stat = kazoo_client.get(f"{root}/buzz/api/_definition")
    assert (data, stat.ephemeralOwner, stat.czxid, stat.mzxid) == (b'{"min_instances":2}', 0, first, second)
    listing = backend.list("")
    assert [(r.key, r.value, r.create_revision, r.mod_revision) for r in listing.records] == [
        ("buzz/api/_definition", b'{"min_instances":2}', first, second)
    ]
    assert listing.revision >= second


def test_listing_records_ephemerals_and_data_but_not_service_paths(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(5)
    backend.put("buzz/buzzadmin/api/host-1", b'{"port":1}', session)
    backend.put("buzz/buzzadmin/api/empty", b"", session)
    kazoo_client.create(f"{root}/nodes/n0", b"1", makepath=True)  # as `zkCli.sh create /services/nodes/n0 1`
    kazoo_client.create(f"{root}/nodes/bare", b"")
    keys = {record.key: record.value for record in backend.list("").records}
    assert keys == {"buzz/buzzadmin/api/host-1": b'{"port":1}', "buzz/buzzadmin/api/empty": b"", "nodes/n0": b"1"}
    assert {r.key for r in backend.list("buzz/").records} == {"buzz/buzzadmin/api/host-1", "buzz/buzzadmin/api/empty"}
    assert {r.key for r in backend.list("nodes/").records} == {"nodes/n0"}
    assert backend.list("buzz/buzzadmin/api/host-1/").records == ()


def test_listing_revisions_never_decrease(backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str) -> None:
    session = backend.open_session(5)
    last = 0
    for step in range(5):
        written = backend.put(f"svc{step}/api/i{step}", b"{}", session)
        for prefix in ("", f"svc{step}/", "missing/", "svc0/"):
            listing = backend.list(prefix)
            assert listing.revision >= last
            assert all(listing.revision >= record.mod_revision for record in listing.records)
            last = listing.revision
        assert last >= written
    kazoo_client.delete(f"{root}/svc0", recursive=True)
    assert backend.list("svc0/").revision >= last


def test_a_persistent_node_is_never_taken_for_an_instance(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    kazoo_client.create(f"{root}/nodes/n0", b"1", makepath=True)
    session = backend.open_session(5)
    with pytest.raises(AlreadyRegistered):
        backend.put("nodes/n0", b"{}", session)
    assert backend.delete("nodes/n0", session) is False
    assert backend.delete("nodes/n0") is True
    assert backend.delete("nodes/n0") is False


def test_sessions_are_the_client_session_and_close_deletes_their_keys(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(30)
    assert isinstance(session, ZooKeeperSession)
    assert session.id == f"0x{backend.session_id:x}"
    heard: list[bool] = []
    session.add_listener(heard.append)
    backend.put("buzz/api/a", b"{}", session)
    backend.put("buzz/api/b", b"{}", session)
    _, stat = kazoo_client.get(f"{root}/buzz/api/a")
    assert stat.ephemeralOwner == session.session_id
    assert session.keys == {"buzz/api/a", "buzz/api/b"}

    session.close()
    session.close()
    assert heard == [False] and not session.alive
    assert kazoo_client.get_children(f"{root}/buzz/api") == []
    with pytest.raises(SessionExpired):
        backend.put("buzz/api/a", b"{}", session)
    assert backend.delete("buzz/api/a", session) is False
    fresh = backend.open_session(30)
    assert fresh.id == session.id and fresh.alive
    backend.put("buzz/api/a", b"{}", fresh)


def test_stream_delivers_puts_updates_and_deletes_below_the_prefix(
    backends: BackendFactory, kazoo_client: KazooClient, root: str, collect: Collector
) -> None:
    watcher, writer = backends(), backends()
    stream = watcher.watch("buzz/", None)
    session = writer.open_session(5)
    # One write at a time: ZooKeeper reads return the latest value only (no INTERMEDIATE_VALUES).
    created = writer.put("buzz/api/host-1", b'{"v":1}', session)
    changes = collect(stream, lambda got: len(got) >= 1)
    updated = writer.put("buzz/api/host-1", b'{"v":2}', session)
    changes += collect(stream, lambda got: len(got) >= 1)
    writer.put("buzzard/api/x", b"{}", session)  # a string prefix of the key, not a path prefix
    assert writer.delete("buzz/api/host-1", session)
    deleted_at = kazoo_client.exists(f"{root}/buzz/api").pzxid
    changes += collect(stream, lambda got: len(got) >= 1)
    stream.close()
    stream.close()
    assert [(c.kind, c.key, c.value, c.create_revision) for c in changes] == [
        (ChangeKind.PUT, "buzz/api/host-1", b'{"v":1}', created),
        (ChangeKind.PUT, "buzz/api/host-1", b'{"v":2}', created),
        (ChangeKind.DELETE, "buzz/api/host-1", None, 0),
    ]
    assert [c.mod_revision for c in changes[:2]] == [created, updated]
    assert changes[2].mod_revision >= deleted_at > updated
    assert changes[2].expired is None
    assert watcher._watches.paths == ()


def test_a_key_gone_before_it_was_read_still_shows_as_put_then_delete(
    backends: BackendFactory, root: str, collect: Collector
) -> None:
    watcher, writer = backends(), backends()
    stream = watcher.watch("", None)
    session = writer.open_session(5)
    writer.put("flap/i0", b"{}", session)
    writer.delete("flap/i0", session)
    changes = collect(stream, lambda got: any(c.kind is ChangeKind.DELETE for c in got))
    stream.close()
    assert [(c.kind, c.key, c.value, c.create_revision) for c in changes] == [
        (ChangeKind.PUT, "flap/i0", None, 0),
        (ChangeKind.DELETE, "flap/i0", None, 0),
    ]
    assert changes[0].mod_revision < changes[1].mod_revision


def _final_state(changes: list[Change]) -> dict[str, bytes | None]:
    """What a consumer applying ``changes`` in order ends up holding."""
    state: dict[str, bytes | None] = {}
    for change in changes:
        if change.kind is ChangeKind.DELETE:
            state.pop(change.key, None)
        else:
            state[change.key] = change.value
    return state


def _watching(backends: BackendFactory) -> tuple[ChangeStream, ZooKeeperBackend, ZooKeeperSession]:
    """A stream over the whole root, and a writer's backend with a session to write through."""
    watcher, writer = backends(), backends()
    stream = watcher.watch("", None)
    return stream, writer, writer.open_session(5)


def test_a_key_re_created_before_any_read_shows_put_delete_put_in_order(
    backends: BackendFactory, collect: Collector
) -> None:
    # A register, its loss and the re-registration, all notified before the stream reads:
    # every read sees the second incarnation, which must not come before the delete.
    stream, writer, session = _watching(backends)
    writer.put("again/i0", b'{"v":1}', session)
    writer.delete("again/i0", session)
    recreated = writer.put("again/i0", b'{"v":2}', session)
    changes = collect(stream, lambda got: any(c.value == b'{"v":2}' for c in got))
    stream.close()
    assert [(c.kind, c.value) for c in changes] == [
        (ChangeKind.PUT, None),
        (ChangeKind.DELETE, None),
        (ChangeKind.PUT, b'{"v":2}'),
    ]
    assert changes[0].mod_revision < changes[1].mod_revision < recreated
    assert changes[2].create_revision == changes[2].mod_revision == recreated
    assert _final_state(changes) == {"again/i0": b'{"v":2}'}


def test_a_told_key_deleted_and_re_created_shows_the_delete_below_the_new_incarnation(
    backends: BackendFactory, collect: Collector
) -> None:
    stream, writer, session = _watching(backends)
    first = writer.put("again/i0", b'{"v":1}', session)
    changes = collect(stream, lambda got: len(got) >= 1)
    writer.delete("again/i0", session)
    recreated = writer.put("again/i0", b'{"v":2}', session)
    later = collect(stream, lambda got: any(c.value == b'{"v":2}' for c in got))
    stream.close()
    assert [(c.kind, c.value) for c in later] == [(ChangeKind.DELETE, None), (ChangeKind.PUT, b'{"v":2}')]
    assert first < later[0].mod_revision < recreated
    assert _final_state(changes + later) == {"again/i0": b'{"v":2}'}


def test_a_batch_cut_before_a_delete_keeps_the_incarnation_its_read_ran_ahead_to(
    backends: BackendFactory, collect: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two notifications a batch: the read of the batch [other2, i0] already sees i0's
    # second incarnation, whose delete and re-creation make the next batch.
    monkeypatch.setattr(zookeeper_stream, "_MAX_BATCH", 2)
    stream, writer, session = _watching(backends)
    assert isinstance(stream, zookeeper_stream.ZooKeeperChangeStream)
    writer.put("again/other", b"{}", session)
    changes = collect(stream, lambda got: any(c.key == "again/other" for c in got))
    writer.put("again/other2", b"{}", session)
    writer.put("again/i0", b'{"v":1}', session)
    writer.delete("again/i0", session)
    writer.put("again/i0", b'{"v":2}', session)
    writer.put("again/end", b"{}", session)
    wait_until(lambda: len(stream._queue) >= 5, timeout=10, message="five notifications queued")
    changes += collect(stream, lambda got: any(c.key == "again/end" for c in got))
    stream.close()
    assert _final_state(changes) == {
        "again/other": b"{}",
        "again/other2": b"{}",
        "again/i0": b'{"v":2}',
        "again/end": b"{}",
    }


def test_300_register_then_deregister_pairs_are_all_seen_in_order(backends: BackendFactory, collect: Collector) -> None:
    watcher, writer = backends(), backends()
    stream = watcher.watch("flap/", None)
    session = writer.open_session(5)
    for i in range(300):
        writer.put(f"flap/i{i}", b"{}", session)
        writer.delete(f"flap/i{i}", session)
    changes = collect(stream, lambda got: sum(c.kind is ChangeKind.DELETE for c in got) >= 300)
    stream.close()
    assert [(c.kind, c.key) for c in changes] == [
        (kind, f"flap/i{i}") for i in range(300) for kind in (ChangeKind.PUT, ChangeKind.DELETE)
    ]
    for put, delete in zip(changes[::2], changes[1::2], strict=True):
        assert put.mod_revision < delete.mod_revision


def test_foreign_nodes_follow_the_record_rules_in_the_stream(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str, collect: Collector
) -> None:
    stream = backend.watch("", None)
    kazoo_client.create(f"{root}/nodes/n0", b"1", makepath=True)
    kazoo_client.set(f"{root}/nodes/n0", b"")
    kazoo_client.create(f"{root}/nodes/end", b"2")
    changes = collect(stream, lambda got: any(c.key == "nodes/end" for c in got))
    stream.close()
    kinds = [(c.kind, c.key) for c in changes]
    # The service path "nodes" is no record; n0 is one while it holds data.
    assert ("nodes" not in {key for _, key in kinds}) and kinds[-1] == (ChangeKind.PUT, "nodes/end")
    assert (ChangeKind.DELETE, "nodes/n0") in kinds


def test_digest_credentials_are_used(backends: BackendFactory, hosts: str, root: str) -> None:
    owner = KazooClient(hosts=hosts, auth_data=[("digest", "ops:secret")])
    owner.start(timeout=15)
    try:
        owner.ensure_path(root)
        owner.create(f"{root}/locked", b"", acl=[make_digest_acl("ops", "secret", all=True)])
        owner.create(f"{root}/locked/api/n0", b"1", makepath=True)
    finally:
        owner.stop()
        owner.close()
    allowed = backends(auth_digest="ops:secret")
    assert [r.key for r in allowed.list("locked/").records] == ["locked/api/n0"]
    refused = backends()
    with pytest.raises(AuthenticationFailed) as caught:
        refused.list("locked/")
    assert caught.value.orig is not None
    wait_until(lambda: allowed.delete("locked/api/n0"), 5, message="delete with credentials")


def test_timeouts_must_be_positive() -> None:
    for option in ("session_timeout", "connect_timeout", "request_timeout"):
        with pytest.raises(InvalidOption) as caught:
            discovery.connect(f"zk://127.0.0.1:1/x?{option}=0")
        assert caught.value.option == option


def test_the_public_api_runs_on_it(hosts: str, root: str) -> None:
    url = f"zk://{hosts}{root}?session_timeout=4"
    with discovery.connect(url) as registry, discovery.connect(url) as other:
        assert registry.backend.name == "zookeeper"
        with other.watch("buzz") as watch:
            lease = registry.register("buzz/api", "host-1", address="10.0.0.5", port=8080, ttl=4)
            added = watch.get(30)
            lease.close()
            removed = watch.get(30)
        assert added is not None and added.kind is discovery.EventKind.ADDED and added.instance is not None
        assert (added.instance.address, added.instance.port) == ("10.0.0.5", 8080)
        assert removed is not None and removed.kind is discovery.EventKind.REMOVED
        assert other.instances("buzz/api") == []


def test_a_server_without_add_watch_is_refused_naming_the_version(backend: ZooKeeperBackend) -> None:
    backend._version, backend._version_checked = (3, 5), True  # what `srvr` reports on a ZooKeeper 3.5 server
    with pytest.raises(Unsupported) as caught:
        backend.watch("", None)
    assert caught.value.backend == "zookeeper"
    assert "3.6" in caught.value.operation and "3.5" in caught.value.operation
    assert backend.watch("", 7).next(0) == Gap("no-resume")


def test_an_ensemble_member_notifies_writes_made_through_another(
    zookeeper_cluster3: object, root: str, make_target: Callable[..., Target], collect: Collector
) -> None:
    members = [member.address for member in zookeeper_cluster3.members]  # type: ignore[attr-defined]
    watcher = ZooKeeperBackend(make_target(members[0], root))
    writer = ZooKeeperBackend(make_target(members[2], root))
    try:
        stream = watcher.watch("flap/", None)
        session = writer.open_session(4)
        for i in range(200):
            writer.put(f"flap/i{i}", b"{}", session)
            writer.delete(f"flap/i{i}", session)
        changes = collect(stream, lambda got: sum(c.kind is ChangeKind.DELETE for c in got) >= 200)
        stream.close()
        assert [(c.kind, c.key) for c in changes] == [
            (kind, f"flap/i{i}") for i in range(200) for kind in (ChangeKind.PUT, ChangeKind.DELETE)
        ]
    finally:
        watcher.close()
        writer.close()


def test_only_a_stream_the_server_acknowledged_is_confirmed(backend: ZooKeeperBackend) -> None:
    # watch() returns once addWatch is acknowledged; a stream that cannot resume
    # never reached the server, so it must not end an outage in the core.
    live = backend.watch("", None)
    unresumable = backend.watch("", 5)
    assert live.confirmed
    assert not unresumable.confirmed and unresumable.next(0) == Gap("no-resume")
    live.close()
    unresumable.close()
