"""The etcd v3 backend's answers to issue 11, against real etcd 3.4 servers.

Names form a tree (an instance id is never also a service segment), refused
by the write itself; a value up to ``max_value_bytes`` is stored under the
longest key allowed; a server down longer than the TTL gets the instance
back on a new lease as soon as it returns, the old lease's key taken over
rather than left to expire; and closing stays prompt while the server is
killed or hung.
"""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import discovery
from discovery.backend import Batch, ChangeKind, Gap, Session, Target
from discovery.errors import AlreadyRegistered, BackendError, NameConflict
from discovery.servers import EtcdCluster
from discovery.testing.waiting import wait_until
from discovery_etcd import EtcdBackend

Collect = Callable[..., tuple[list[Batch], Gap | None]]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def owned(session: Session) -> bytes:
    return f'{{"registrant":"{session.id}"}}'.encode()


def keys_under(backend: EtcdBackend, prefix: str = "") -> set[str]:
    return {record.key for record in backend.list(prefix).records}


def test_name_conflict_is_refused_by_the_write_and_changes_nothing(v3: EtcdBackend) -> None:
    mine = v3.open_session(2)
    theirs = v3.open_session(2)
    v3.put("shop/api", owned(mine), mine)
    v3.put("a/b/c/d", owned(mine), mine)
    v3.put("web/_definition", b"{}", None)
    before = v3.list("")
    attempts = [
        ("shop/api/x", mine, "shop/api"),  # below an instance
        ("shop/api/_definition", None, "shop/api"),  # a definition below an instance
        ("a/b/c/d/e/f", theirs, "a/b/c/d"),  # several levels below
        ("a/b", mine, "a/b/c/d"),  # above an instance, several levels up
        ("a/b/c", None, "a/b/c/d"),
        ("web", theirs, "web/_definition"),  # above a definition
    ]
    for key, session, conflict in attempts:
        with pytest.raises(NameConflict) as caught:
            v3.put(key, b"{}" if session is None else owned(session), session)
        assert (caught.value.key, caught.value.conflict) == (key, conflict)
    after = v3.list("")
    assert after.records == before.records
    with pytest.raises(AlreadyRegistered):
        v3.put("shop/api", owned(theirs), theirs)
    mine.close()
    theirs.close()


def test_registry_refuses_a_name_used_both_ways(etcd_cluster: EtcdCluster, root: str) -> None:
    with discovery.connect(etcd_cluster.url("etcd", root)) as registry:
        registry.register("shop/api", "x", ttl=2)
        with pytest.raises(NameConflict):
            registry.register("shop", "api", ttl=2)
        registry.register("mall", "api", ttl=2)
        with pytest.raises(NameConflict):
            registry.register("mall/api", "x", ttl=2)
        assert [i.id for i in registry.instances("shop/api")] == ["x"]
        assert [i.id for i in registry.instances("mall")] == ["api"]


def test_value_at_the_limit_under_the_longest_key_is_stored_and_read_back(etcd_cluster: EtcdCluster) -> None:
    host, _, port = etcd_cluster.client_urls[0].removeprefix("http://").rpartition(":")
    # The deepest, longest name the core allows: 17 segments of 128 four-byte characters.
    key = "/".join(["\U00010000" * 128] * 17)
    head = f"/t-{uuid.uuid4().hex[:12]}-"
    root = head + "r" * (EtcdBackend.max_key_bytes - len(head) - 1 - len(key.encode()))
    values = {name: option.default for name, option in EtcdBackend.options.items()}
    backend = EtcdBackend(Target("etcd", ((host, int(port)),), root, values))
    try:
        assert backend.key_size(key) == EtcdBackend.max_key_bytes
        value = bytes(range(256)) * (EtcdBackend.max_value_bytes // 256) + b"v" * (EtcdBackend.max_value_bytes % 256)
        session = backend.open_session(5)
        revision = backend.put(key, value, session)
        (record,) = backend.list("").records
        assert (record.key, record.value, record.mod_revision) == (key, value, revision)
        changed = value[:-1] + b"w"
        assert backend.put(key, changed, session) > revision
        assert backend.delete(key, session) is True
        backend.put(key, value, None)
        (record,) = backend.list("").records
        assert record.value == value
        assert backend.delete(key) is True
        session.close()
    finally:
        backend.close()


def _holder(cluster: EtcdCluster, key: str) -> str | None:
    kvs = cluster.request("/v3/kv/range", {"key": b64(key)}).get("kvs")
    return str(kvs[0].get("lease", "0")) if kvs else None


def _lease_gone(cluster: EtcdCluster, lease_id: str) -> bool:
    return int(cluster.request("/v3/lease/timetolive", {"ID": lease_id}).get("TTL", -1)) < 0


def test_server_down_longer_than_the_ttl_gets_the_instance_back_on_a_new_lease_at_once(
    etcd_own: EtcdCluster, root: str, read_stream: Collect
) -> None:
    etcd_own.wait_healthy()
    member = etcd_own.members[0]
    key = f"{root}/svc/api/h1"
    with discovery.connect(etcd_own.url("etcd", root)) as registry:
        registration = registry.register("svc/api", "h1", ttl=2)
        (old,) = registry.sessions
        start = etcd_own.revision()
        member.kill()
        try:
            wait_until(lambda: not old.alive, timeout=30, message="the keep-alive never declared the lease lost")
        finally:
            member.restart()
        # etcd restored the old lease with a fresh TTL; the registry must not wait for it to run out.
        new = wait_until(
            lambda: (holder := _holder(etcd_own, key)) not in (None, old.id) and holder,
            timeout=30,
            message="the instance never came back on a new lease",
            ignore=(OSError,),
        )
        wait_until(lambda: registration.alive, timeout=10, message="the registration never turned alive again")
        assert registry.sessions[0].id == new
        wait_until(
            lambda: _lease_gone(etcd_own, old.id),
            timeout=15,
            message="the lost lease was never revoked",
            ignore=(OSError,),
        )
        backend = registry.backend
        assert isinstance(backend, EtcdBackend)
        history = backend.watch("svc/", start)
        batches, gap = read_stream(
            history,
            lambda got: any(c.kind is ChangeKind.PUT and c.key == "svc/api/h1" for b in got for c in b.changes),
        )
        history.close()
        assert gap is None
        kinds = [c.kind for b in batches for c in b.changes if c.key == "svc/api/h1"]
        # Taken over by a put, never deleted by the old lease's expiry in between.
        assert ChangeKind.DELETE not in kinds, kinds
        assert registration.alive


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_closing_is_prompt_while_the_server_is_down(etcd_own: EtcdCluster, root: str, fault: str) -> None:
    etcd_own.wait_healthy()
    member = etcd_own.members[0]
    registry = discovery.connect(etcd_own.url("etcd", root))
    registration = registry.register("svc/api", "h1", ttl=10)
    watch = registry.watch("svc")
    durations: dict[str, float] = {}
    (member.kill if fault == "kill" else member.pause)()
    try:
        for name, close in (("registration", registration.close), ("watch", watch.close), ("registry", registry.close)):
            began = time.monotonic()
            with contextlib.suppress(BackendError):  # the server could not be told: that is allowed, waiting is not
                close()
            durations[name] = time.monotonic() - began
    finally:
        if fault == "kill":
            member.restart()
        else:
            member.resume()
    etcd_own.wait_healthy()
    assert all(seconds < 3.0 for seconds in durations.values()), durations


def test_keepalive_thread_death_marks_the_session_lost(v3: EtcdBackend, monkeypatch: Any) -> None:
    session = v3.open_session(2)

    def die(*_args: object, **_kwargs: object) -> int:
        raise SystemExit("a keep-alive bug")

    monkeypatch.setattr(session._client, "lease_keepalive", die)  # type: ignore[attr-defined]
    wait_until(lambda: not session.alive, timeout=10, message="a dead keep-alive left the session looking alive")
    monkeypatch.undo()
    session.close()
