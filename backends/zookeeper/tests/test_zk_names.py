"""Keys form a tree on ZooKeeper too: name conflicts, leftover service znodes, refused characters.

ZooKeeper keeps the znodes between keys, and they outlive what was below
them: after ``shop/api/x`` is gone, ``/root/shop/api`` stays as a persistent
znode without data. Such a leftover is no key and must give way to a put of
``shop/api``; a znode with a key below it, an instance above the key, or a
znode with data above it are name conflicts, reported as
:class:`~discovery.errors.NameConflict` by both the backend and the registry.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadArgumentsError

import discovery
from discovery.backend import Change, ChangeKind, ChangeStream
from discovery.errors import AlreadyRegistered, InvalidName, NameConflict
from discovery_zookeeper import ZooKeeperBackend

BackendFactory = Callable[..., ZooKeeperBackend]
Collector = Callable[[ChangeStream, Callable[[list[Change]], bool]], list[Change]]


def test_a_leftover_service_znode_gives_way_to_an_instance(
    backends: BackendFactory, kazoo_client: KazooClient, root: str
) -> None:
    first, second = backends(), backends()
    gone = first.open_session(4)
    first.put("shop/api/x", b"{}", gone)
    first.delete("shop/api/x", gone)
    # A deeper leftover chain, as a failed makepath leaves it: still no key.
    kazoo_client.ensure_path(f"{root}/shop/web/v1/v2")
    assert kazoo_client.exists(f"{root}/shop/api") is not None

    session = second.open_session(4)
    second.put("shop/api", b'{"v":1}', session)
    second.put("shop/web", b'{"v":1}', session)
    _, stat = kazoo_client.get(f"{root}/shop/api")
    assert stat.ephemeralOwner == second.session_id
    assert sorted(record.key for record in second.list("").records) == ["shop/api", "shop/web"]


def test_a_znode_with_a_key_below_is_a_conflict_and_stays(backends: BackendFactory) -> None:
    backend = backends()
    session = backend.open_session(4)
    backend.put("shop/api/x", b"{}", session)
    with pytest.raises(NameConflict) as raised:
        backend.put("shop/api", b"{}", session)
    assert (raised.value.key, raised.value.conflict) == ("shop/api", "shop/api/x")
    with pytest.raises(NameConflict) as raised:
        backend.put("shop/api", b'{"min_instances":1}', None)
    assert raised.value.conflict == "shop/api/x"
    assert [record.key for record in backend.list("").records] == ["shop/api/x"]


def test_a_key_below_an_instance_or_a_znode_with_data_is_a_conflict(
    backends: BackendFactory, kazoo_client: KazooClient, root: str
) -> None:
    backend = backends()
    session = backend.open_session(4)
    backend.put("shop/api", b"{}", session)
    for key, persistent in [("shop/api/x", False), ("shop/api/x/y", False), ("shop/api/_definition", True)]:
        with pytest.raises(NameConflict) as raised:
            backend.put(key, b"{}", None if persistent else session)
        assert (raised.value.key, raised.value.conflict) == (key, "shop/api")

    # A persistent znode with data is a key, though ZooKeeper would accept children below it.
    kazoo_client.create(f"{root}/foreign/leaf", b"data", makepath=True)
    with pytest.raises(NameConflict) as raised:
        backend.put("foreign/leaf/x", b"{}", session)
    assert raised.value.conflict == "foreign/leaf"
    assert kazoo_client.get_children(f"{root}/foreign/leaf") == []
    # ... and one held by no session is not ours to take.
    with pytest.raises(AlreadyRegistered):
        backend.put("foreign/leaf", b"{}", session)
    assert sorted(record.key for record in backend.list("").records) == ["foreign/leaf", "shop/api"]


def test_deregistering_a_service_path_finds_no_instance(
    backends: BackendFactory, kazoo_client: KazooClient, root: str
) -> None:
    backend = backends()
    session = backend.open_session(4)
    backend.put("shop/api/x", b"{}", session)
    backend.put("shop/web/y", b"{}", session)
    backend.delete("shop/web/y", session)
    assert backend.delete("shop/api") is False  # has children
    assert backend.delete("shop/web") is False  # a leftover, no key
    assert kazoo_client.exists(f"{root}/shop/api/x") is not None
    assert backend.delete("shop/api/x") is True


def test_the_registry_reports_name_conflicts_both_ways(zookeeper_cluster: object, root: str) -> None:
    url = f"{zookeeper_cluster.url('zookeeper', root)}?session_timeout=4"  # type: ignore[attr-defined]
    with discovery.connect(url) as registry:
        old = registry.register("shop/api", "x", ttl=4)
        old.close()
        # The reported defect: the leftover /root/shop/api made this AlreadyRegistered forever.
        lease = registry.register("shop", "api", ttl=4)
        assert [instance.id for instance in registry.instances("shop")] == ["api"]
        # The reverse: below a live instance, a bare BackendError ("server unreachable" in the CLI).
        with pytest.raises(NameConflict) as raised:
            registry.register("shop/api", "x", ttl=4)
        assert raised.value.conflict == "shop/api"
        with pytest.raises(NameConflict):
            registry.define("shop/api", min_instances=1)
        lease.close()
        registry.register("shop/api", "x", ttl=4)
        with pytest.raises(NameConflict) as raised:
            registry.register("shop", "api", ttl=4)
        assert raised.value.conflict == "shop/api/x"


def test_a_leftover_removed_for_a_put_is_no_change_for_a_stream(backends: BackendFactory, collect: Collector) -> None:
    backend = backends()
    session = backend.open_session(4)
    backend.put("shop/api/x", b"{}", session)
    backend.delete("shop/api/x", session)
    stream = backend.watch("shop/", None)
    backend.put("shop/api", b'{"v":1}', session)
    changes = collect(stream, lambda seen: any(c.kind is ChangeKind.PUT and c.key == "shop/api" for c in seen))
    puts = [(c.key, c.value) for c in changes if c.kind is ChangeKind.PUT]
    assert puts == [("shop/api", b'{"v":1}')]
    stream.close()


@pytest.mark.parametrize("character", ["\x01", "\x7f", "\x9f", "\ud800", "\ue000", "\uf8ff", "\ufff0", "\U0001f600"])
def test_characters_zookeeper_refuses_are_refused_before_the_server(backend: ZooKeeperBackend, character: str) -> None:
    assert any(low <= ord(character) <= high for low, high in ZooKeeperBackend.refused_characters)
    session = backend.open_session(4)
    with pytest.raises(InvalidName):
        backend.put(f"shop/a{character}b", b"{}", session)
    with pytest.raises(InvalidName):
        backend.list(f"shop{character}/")
    # A lone surrogate used to kill kazoo's connection thread: the client must still work.
    backend.put("shop/ok", b"{}", session)
    assert [record.key for record in backend.list("shop/").records] == ["shop/ok"]


def test_refused_characters_are_what_the_server_refuses(kazoo_client: KazooClient, root: str) -> None:
    # One character each side of every range boundary; surrogates cannot even be sent.
    kazoo_client.ensure_path(root)
    for low, high in ZooKeeperBackend.refused_characters:
        for code, refused in [(low - 1, False), (low, True), (high, True), (high + 1, False)]:
            if code < 1 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code == ord("/"):
                continue
            if not refused and any(lo <= code <= hi for lo, hi in ZooKeeperBackend.refused_characters):
                continue
            path = f"{root}/c{chr(code)}"
            if refused:
                with pytest.raises(BadArgumentsError):
                    kazoo_client.create(path)
            else:
                kazoo_client.create(path)
