"""ZooKeeper ACLs: the ``acl`` option, znodes created with it, and refusals typed as PermissionDenied.

A registry of ``alice`` (``auth_digest=alice:pw``, ``acl=owner:all,world:read``)
creates the service paths and instances; ``bob`` (other credentials) may not
change them and gets PermissionDenied naming the key, nothing changed, at
once; a client without credentials gets AuthenticationFailed; every watcher
that may read sees every event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, NoAuthError
from kazoo.security import ACL, Id, Permissions, make_digest_acl_credential

import discovery
from discovery.errors import AuthenticationFailed, InvalidOption, PermissionDenied
from discovery.models import EventKind
from discovery_zookeeper._acl import parse_acl
from discovery_zookeeper._errors import boundary

OWNER = Id("digest", make_digest_acl_credential("alice", "pw"))
WORLD = Id("world", "anyone")
OTHER_HASH = make_digest_acl_credential("ops", "secret").split(":", 1)[1]
DEADLINE = 5.0
"""Seconds a refusal may take at most: it is the server's answer to one request."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("owner:all,world:read", (ACL(Permissions.ALL, OWNER), ACL(Permissions.READ, WORLD))),
        ("owner:cdrw, anyone:r", (ACL(15, OWNER), ACL(Permissions.READ, WORLD))),
        ("world:anyone:cdrwa", (ACL(Permissions.ALL, WORLD),)),
        (f"owner:all,digest:ops:{OTHER_HASH}:rw", (ACL(31, OWNER), ACL(3, Id("digest", f"ops:{OTHER_HASH}")))),
        (
            "owner:all,ip:10.0.0.0/8:r,ip:fe80::1:r",
            (ACL(31, OWNER), ACL(1, Id("ip", "10.0.0.0/8")), ACL(1, Id("ip", "fe80::1"))),
        ),
        ("owner:cd,owner:rw", (ACL(15, OWNER),)),
    ],
)
def test_acl_syntax(text: str, expected: tuple[ACL, ...]) -> None:
    assert parse_acl(text, "alice:pw") == expected


@pytest.mark.parametrize(
    ("text", "digest", "reason"),
    [
        ("owner", "alice:pw", "not WHO:PERMS"),
        ("owner:rwx", "alice:pw", "letters of cdrwa"),
        ("owner:rr", "alice:pw", "distinct letters"),
        ("owner:all,nobody:r", "alice:pw", "WHO is owner"),
        ("owner:all,digest:ops:short:r", "alice:pw", "base64 SHA-1"),
        ("owner:all,ip:10.0.0.300:r", "alice:pw", "not an address"),
        ("owner:all", "", "auth_digest is not set"),
        ("owner:r,world:r", "alice:pw", "cdrw"),
        (f"digest:ops:{OTHER_HASH}:all", "alice:pw", "cdrw"),
        ("", "", None),
    ],
)
def test_acl_refused_with_the_option_named(text: str, digest: str, reason: str | None) -> None:
    if reason is None:
        assert parse_acl(text, digest) == ()
        return
    with pytest.raises(InvalidOption) as caught:
        parse_acl(text, digest)
    assert caught.value.option == "acl"
    assert reason in caught.value.reason


def test_a_bad_acl_is_refused_before_connecting() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidOption) as caught:
        discovery.connect("zk://127.0.0.1:1/x?acl=owner:all")
    assert caught.value.option == "acl" and "auth_digest" in caught.value.reason
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("exc", "authenticated", "expected"),
    [
        (NoAuthError(), True, PermissionDenied),
        (NoAuthError(), False, AuthenticationFailed),
        (AuthFailedError(), True, AuthenticationFailed),
    ],
)
def test_no_auth_is_permission_denied_only_with_credentials(
    exc: Exception, authenticated: bool, expected: type[Exception]
) -> None:
    with pytest.raises(AuthenticationFailed) as caught, boundary("put a/b", "a/b", authenticated):
        raise exc
    assert type(caught.value) is expected
    assert caught.value.orig is exc and caught.value.__cause__ is exc
    if isinstance(caught.value, PermissionDenied):
        assert caught.value.key == "a/b"


Connect = Callable[..., discovery.Registry]


@pytest.fixture
def connect(hosts: str, root: str) -> Iterator[Connect]:
    """Open registries on the test's root (keyword arguments are options); all closed after the test."""
    opened: list[discovery.Registry] = []

    def make(**options: object) -> discovery.Registry:
        registry = discovery.connect(f"zk://{hosts}{root}", session_timeout=4, **options)
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


def refused(action: Callable[[], object], key: str) -> None:
    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        action()
    assert time.monotonic() - started < DEADLINE
    assert caught.value.key == key
    assert isinstance(caught.value.orig, NoAuthError)


def tree(client: KazooClient, path: str) -> dict[str, bytes]:
    """Every znode below ``path`` and its data, read by a plain client."""
    found: dict[str, bytes] = {}
    pending = [path]
    while pending:
        current = pending.pop()
        found[current] = client.get(current)[0]
        pending += [f"{current}/{child}" for child in client.get_children(current)]
    return found


def test_nodes_carry_the_acl_and_other_identities_cannot_change_them(
    connect: Connect, kazoo_client: KazooClient, root: str, hosts: str
) -> None:
    alice = connect(auth_digest="alice:pw", acl="owner:all,world:read")
    registration = alice.register("shop/api", "h1", address="10.0.0.1", port=80)
    alice.define("shop/api", min_instances=1)
    expected = [ACL(Permissions.ALL, OWNER), ACL(Permissions.READ, WORLD)]
    # ZooKeeper shows a digest's hash to those with ADMIN on the znode only.
    owner = KazooClient(hosts=hosts, auth_data=[("digest", "alice:pw")])
    owner.start(timeout=15)
    try:
        for path in (root, f"{root}/shop", f"{root}/shop/api", f"{root}/shop/api/h1", f"{root}/shop/api/_definition"):
            assert owner.get_acls(path)[0] == expected, path
    finally:
        owner.stop()
        owner.close()
    before = tree(kazoo_client, root)

    bob = connect(auth_digest="bob:pw")
    refused(lambda: bob.deregister("shop/api", "h1"), "shop/api/h1")
    refused(lambda: bob.backend.put("shop/api/h1", b'{"address":"6.6.6.6"}', None), "shop/api/h1")
    refused(lambda: bob.register("shop/api", "h2"), "shop/api/h2")
    refused(lambda: bob.define("shop/api", min_instances=3), "shop/api/_definition")
    refused(lambda: bob.undefine("shop/api"), "shop/api/_definition")
    refused(lambda: bob.register("shop/web", "h1"), "shop/web/h1")
    # Without credentials ZooKeeper cannot say who asks: the refusal stays AuthenticationFailed.
    anonymous = connect()
    with pytest.raises(AuthenticationFailed) as caught:
        anonymous.deregister("shop/api", "h1")
    assert not isinstance(caught.value, PermissionDenied)
    assert tree(kazoo_client, root) == before
    # What the ACL lets others do, they do: read.
    assert [i.id for i in bob.instances("shop/api")] == ["h1"]
    assert anonymous.definitions() == {"shop/api": 1}
    registration.update(meta={"v": 2})
    registration.close()
    assert alice.instances("shop/api") == []


def test_watchers_that_may_read_see_every_event(connect: Connect) -> None:
    alice = connect(auth_digest="alice:pw", acl="owner:all,world:read")
    alice.register("shop/api", "h0")
    watchers = [connect(auth_digest="bob:pw").watch("shop"), connect().watch("shop"), alice.watch("shop")]
    registration = alice.register("shop/api", "h1")
    registration.update(meta={"v": 2})
    registration.close()
    for watch in watchers:
        events = [watch.get(30) for _ in range(3)]
        assert [(e.kind, e.instance_id) if e else None for e in events] == [
            (EventKind.ADDED, "h1"),
            (EventKind.UPDATED, "h1"),
            (EventKind.REMOVED, "h1"),
        ]
        assert [i.id for i in watch.snapshot.instances] == ["h0"]
        watch.close()


def test_the_default_keeps_zookeepers_open_acl(connect: Connect, kazoo_client: KazooClient, root: str) -> None:
    registry = connect(auth_digest="alice:pw")
    registry.register("shop/api", "h1")
    for path in (f"{root}/shop/api", f"{root}/shop/api/h1"):
        assert kazoo_client.get_acls(path)[0] == [ACL(Permissions.ALL, WORLD)]
