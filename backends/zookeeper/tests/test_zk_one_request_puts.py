"""A registration costs one request, as with kazoo alone, and keeps every check the long way makes.

The first put below a parent reads the znodes between the root and it (none
may be a key) and creates the instance; the next ones below the same parent
send one atomic ``multi``: version checks of those znodes and of the
previous instance (an ephemeral of the same session), then the create. These
tests change the tree under the backend's feet, with another connection,
between two puts: each change a check exists for must still be refused, and
nothing may be written.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, Id, Permissions, make_digest_acl_credential

from discovery.errors import AlreadyRegistered, NameConflict, SessionExpired
from discovery.testing.waiting import wait_until
from discovery_zookeeper import ZooKeeperBackend
from discovery_zookeeper._guarded_create import Created, GuardedCreate, GuardFailed
from discovery_zookeeper._kazoo_private import messages_received, send_request

BackendFactory = Callable[..., ZooKeeperBackend]
VALUE = b'{"address":"127.0.0.1","meta":{},"port":8080}'


def test_puts_below_a_checked_parent_cost_one_request_each(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(10)
    backend.put("buzz/api/first", VALUE, session)  # the parents are created: nothing was read to rely on
    before = messages_received(backend._client)
    backend.put("buzz/api/second", VALUE, session)  # the long way: reads of the parents, then the create
    assert messages_received(backend._client) - before >= 3
    before = messages_received(backend._client)
    for i in range(50):
        backend.put(f"buzz/api/i{i}", VALUE, session)
    # One reply each; a ping answer or two may come in between.
    assert messages_received(backend._client) - before <= 52
    for i in (0, 49):
        data, stat = kazoo_client.get(f"{root}/buzz/api/i{i}")
        assert data == VALUE
        assert stat.ephemeralOwner == session.session_id
    revision = backend.put("buzz/api/last", VALUE, session)
    assert kazoo_client.exists(f"{root}/buzz/api/last").mzxid == revision  # type: ignore[union-attr]


def test_a_parent_given_data_between_two_puts_is_refused(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, session)
    backend.put("buzz/api/b", VALUE, session)
    kazoo_client.set(f"{root}/buzz/api", b"now a key")
    with pytest.raises(NameConflict) as parent:
        backend.put("buzz/api/c", VALUE, session)
    assert parent.value.conflict == "buzz/api"
    kazoo_client.set(f"{root}/buzz/api", b"")
    backend.put("buzz/api/c", VALUE, session)
    kazoo_client.set(f"{root}/buzz", b"now a key too")
    with pytest.raises(NameConflict) as grandparent:
        backend.put("buzz/api/d", VALUE, session)
    assert grandparent.value.conflict == "buzz"
    assert kazoo_client.exists(f"{root}/buzz/api/d") is None


def test_a_parent_deleted_and_created_again_as_a_key_is_refused(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    # Created again with data, the parent has data version 0 again, as when it was checked:
    # only the check of the previous instance, which had to go first, tells.
    session = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, session)
    backend.put("buzz/api/b", VALUE, session)
    kazoo_client.delete(f"{root}/buzz/api", recursive=True)
    kazoo_client.create(f"{root}/buzz/api", b"a key now")
    assert kazoo_client.exists(f"{root}/buzz/api").version == 0  # type: ignore[union-attr]
    with pytest.raises(NameConflict) as refused:
        backend.put("buzz/api/c", VALUE, session)
    assert refused.value.conflict == "buzz/api"
    assert kazoo_client.get_children(f"{root}/buzz/api") == []


def test_a_key_held_by_another_session_below_a_checked_parent_is_refused(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, session)
    backend.put("buzz/api/b", VALUE, session)
    kazoo_client.create(f"{root}/buzz/api/theirs", b"{}", ephemeral=True)
    with pytest.raises(AlreadyRegistered):
        backend.put("buzz/api/theirs", VALUE, session)
    assert kazoo_client.get(f"{root}/buzz/api/theirs")[0] == b"{}"
    # The refusal did not cost the parent its check: the next put is one request again.
    before = messages_received(backend._client)
    backend.put("buzz/api/c", VALUE, session)
    assert messages_received(backend._client) - before <= 2


def test_a_key_put_again_is_updated_in_place(backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str) -> None:
    session = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, session)
    backend.put("buzz/api/b", VALUE, session)
    _, created = kazoo_client.get(f"{root}/buzz/api/b")
    revision = backend.put("buzz/api/b", b'{"v":2}', session)
    data, stat = kazoo_client.get(f"{root}/buzz/api/b")
    assert (data, stat.czxid, stat.mzxid) == (b'{"v":2}', created.czxid, revision)
    # b, the last instance created, vouches for its parent whatever its data: the next put is one request.
    before = messages_received(backend._client)
    backend.put("buzz/api/c", VALUE, session)
    assert messages_received(backend._client) - before <= 2


def test_a_put_never_lands_on_the_session_after_the_one_it_was_made_for(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    old = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, old)
    backend.put("buzz/api/b", VALUE, old)
    first = backend.session_id
    backend.expire_session()
    wait_until(lambda: backend.session_id not in (None, first), 30, message="a new ZooKeeper session")
    with pytest.raises(SessionExpired):
        backend.put("buzz/api/c", VALUE, old)
    new = backend.open_session(10)
    backend.put("buzz/api/a", VALUE, new)
    backend.put("buzz/api/c", VALUE, new)
    for name in ("a", "c"):
        assert kazoo_client.exists(f"{root}/buzz/api/{name}").ephemeralOwner == new.session_id  # type: ignore[union-attr]


def test_the_acl_option_applies_to_every_instance(backends: BackendFactory, hosts: str, root: str) -> None:
    backend = backends(auth_digest="alice:pw", acl="owner:all,world:read")
    session = backend.open_session(10)
    for name in ("a", "b", "c", "d"):
        backend.put(f"buzz/api/{name}", VALUE, session)
    alice = KazooClient(hosts=hosts, auth_data=[("digest", "alice:pw")])
    alice.start(timeout=15)
    try:
        owner = Id("digest", make_digest_acl_credential("alice", "pw"))
        expected = [ACL(Permissions.ALL, owner), ACL(Permissions.READ, Id("world", "anyone"))]
        for name in ("a", "b", "c", "d"):
            acls, _ = alice.get_acls(f"{root}/buzz/api/{name}")
            assert sorted(acls) == sorted(expected), name
    finally:
        alice.stop()
        alice.close()


def test_a_guarded_create_applies_entirely_or_not_at_all(kazoo_client: KazooClient, root: str) -> None:
    client = kazoo_client
    client.create(f"{root}/svc", b"", makepath=True)
    acl = tuple(client.default_acl or ()) or (ACL(Permissions.ALL, Id("world", "anyone")),)

    def run(request: GuardedCreate) -> Created | GuardFailed:
        reply = client.handler.async_result()
        send_request(client, request, reply)
        (outcome,) = reply.get(timeout=10)
        assert isinstance(outcome, Created | GuardFailed)
        return outcome

    created = run(GuardedCreate(((root, 0), (f"{root}/svc", 0)), f"{root}/svc/a", b"v", acl))
    assert isinstance(created, Created)
    stat = client.exists(f"{root}/svc/a")
    assert stat is not None
    assert (stat.czxid, stat.mzxid, stat.ephemeralOwner) == (created.zxid, created.zxid, client.client_id[0])
    assert run(GuardedCreate(((f"{root}/svc", 1),), f"{root}/svc/b", b"v", acl)) == GuardFailed(0, -103)
    assert run(GuardedCreate(((f"{root}/svc", 0),), f"{root}/svc/a", b"v", acl)) == GuardFailed(1, -110)
    assert run(GuardedCreate(((f"{root}/gone", 0),), f"{root}/svc/b", b"v", acl)) == GuardFailed(0, -101)
    assert client.exists(f"{root}/svc/b") is None
    # The connection is fine after every answer (kazoo reads a multi's answer on its connection thread).
    assert client.connected
    assert client.get(f"{root}/svc/a")[0] == b"v"


def test_a_bulk_put_is_one_multi_of_all_or_nothing(
    backend: ZooKeeperBackend, kazoo_client: KazooClient, root: str
) -> None:
    session = backend.open_session(10)
    backend.put_many([("bulk/api/a", VALUE), ("bulk/api/b", VALUE)], session)  # the parent gets pinned
    before = messages_received(backend._client)
    items = [(f"bulk/api/i{i}", VALUE) for i in range(100)]
    revisions = backend.put_many(items, session)
    # One reply for the hundred creates; a ping answer or two may come in between.
    assert messages_received(backend._client) - before <= 3
    assert len(set(revisions)) == 1, "one transaction, one zxid"
    assert kazoo_client.exists(f"{root}/bulk/api/i99").czxid == revisions[0]  # type: ignore[union-attr]
    # A batch holding a znode another session owns writes nothing of itself.
    kazoo_client.create(f"{root}/bulk/api/taken", b"{}", ephemeral=True)
    with pytest.raises(AlreadyRegistered):
        backend.put_many([("bulk/api/x", VALUE), ("bulk/api/taken", VALUE), ("bulk/api/y", VALUE)], session)
    assert kazoo_client.exists(f"{root}/bulk/api/x") is None
    assert kazoo_client.exists(f"{root}/bulk/api/y") is None
