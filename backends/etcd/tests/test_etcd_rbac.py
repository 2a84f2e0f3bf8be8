"""Both etcd backends under role-based access: inside a grant everything works, outside it PermissionDenied.

A user of the registry rooted at ``R`` gets read-write on ``R/team`` and
read-only on ``R/shared`` (v3: the key ranges from those prefixes; v2: the
patterns ``R/team``, ``R/team/*``...), nothing on ``R/other``. Every refusal
must be typed, name the key or prefix as the caller gave it, change nothing
(read back by root) and come within the backend's timeout. The server runs
with ``--auth-token-ttl=2``, so every test also crosses v3 token expiries.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import discovery
from discovery.errors import AuthenticationFailed, PermissionDenied, WatchBroken
from discovery.models import EventKind
from discovery.servers import EtcdCluster
from discovery_etcd._errors import V3_ERRORS, GatewayError, keyed
from discovery_etcd._v3client import prefix_end

TIMEOUT = 2.0
"""The backends' ``timeout`` option: every refusal must come sooner."""

TOKEN_TTL = 2
"""etcd's ``--auth-token-ttl``: a v3 token unused this long is forgotten by the server."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Admin:
    """etcd's root user, over HTTP: users, roles and reads of what is stored, in both auth stores."""

    def __init__(self, url: str) -> None:
        self.url = url

    def v3(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self._post("/v3/auth/authenticate", {"name": "root", "password": "pw"}, {})["token"]
        return self._post(path, body, {"Authorization": token})

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        answer = requests.post(self.url + path, json=body, headers=headers, timeout=10)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
        return document

    def v2(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        answer = requests.request(method, self.url + path, auth=("root", "pw"), timeout=10, **kwargs)
        answer.raise_for_status()
        return answer

    def user(self, scheme: str, root: str, read_write: list[str], read: list[str]) -> str:
        """A new user (password ``pw``) whose one role grants the prefixes below ``root``; its name."""
        name = f"u{uuid.uuid4().hex[:8]}"
        if scheme == "etcd":
            self.v3("/v3/auth/role/add", {"name": name})
            for prefixes, kind in ((read_write, "READWRITE"), (read, "READ")):
                for prefix in prefixes:
                    self.v3("/v3/auth/role/grant", {"name": name, "perm": self._perm(kind, f"{root}/{prefix}")})
            self.v3("/v3/auth/user/add", {"name": name, "password": "pw"})
            self.v3("/v3/auth/user/grant", {"user": name, "role": name})
        else:
            # The root directory itself, exactly (no "*"): reading it lets v2 tell a
            # missing grant from a wrong password.
            readable = [f"{root}/", *self._patterns(root, read_write + read)]
            kv = {"read": readable, "write": self._patterns(root, read_write)}
            self.v2("PUT", f"/v2/auth/roles/{name}", json={"role": name, "permissions": {"kv": kv}})
            self.v2("PUT", f"/v2/auth/users/{name}", json={"user": name, "password": "pw", "roles": [name]})
        return name

    def revoke_read(self, scheme: str, user: str, root: str, prefix: str) -> None:
        """Take back the user's read grant of ``prefix``."""
        if scheme == "etcd":
            start = f"{root}/{prefix}".encode()
            body = {"role": user, "key": b64(start), "range_end": b64(prefix_end(start))}
            self.v3("/v3/auth/role/revoke", body)
        else:
            revoke = {"kv": {"read": self._patterns(root, [prefix])}}
            self.v2("PUT", f"/v2/auth/roles/{user}", json={"role": user, "revoke": revoke})

    @staticmethod
    def _perm(kind: str, prefix: str) -> dict[str, str]:
        # The prefix without "/": the registry compares a service path's own key to keep keys a tree.
        return {"permType": kind, "key": b64(prefix.encode()), "range_end": b64(prefix_end(prefix.encode()))}

    @staticmethod
    def _patterns(root: str, prefixes: list[str]) -> list[str]:
        return [pattern for prefix in prefixes for pattern in (f"{root}/{prefix}", f"{root}/{prefix}/*")]

    def stored(self, root: str) -> dict[str, bytes]:
        """Every key below ``root`` (relative; v2's marked ``v2:``) and its value: etcd 3.4 keeps both stores apart."""
        start = f"{root}/".encode()
        answer = self.v3("/v3/kv/range", {"key": b64(start), "range_end": b64(prefix_end(start))})
        found = {
            base64.b64decode(kv["key"]).decode()[len(root) + 1 :]: base64.b64decode(kv.get("value", ""))
            for kv in answer.get("kvs", ())
        }
        listing = requests.get(f"{self.url}/v2/keys{root}/", params={"recursive": "true"}, auth=("root", "pw"))
        if listing.status_code == 200:
            pending = [listing.json()["node"]]
            while pending:
                node = pending.pop()
                pending += node.get("nodes", [])
                if not node.get("dir"):
                    found["v2:" + node["key"][len(root) + 1 :]] = node.get("value", "").encode()
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    """An etcd of its own, tokens living 2 s, user ``root`` (password ``pw``), authentication on in both APIs."""
    with EtcdCluster(members=1, auth_token_ttl=TOKEN_TTL) as cluster:
        cluster.enable_auth("pw")
        yield cluster


@pytest.fixture
def admin(cluster: EtcdCluster) -> Admin:
    return Admin(cluster.client_urls[0])


Connect = Callable[..., discovery.Registry]


@pytest.fixture
def connect(cluster: EtcdCluster, root: str) -> Iterator[Connect]:
    """Open registries on the test's root (``connect(scheme, user=...)``); all closed after the test."""
    opened: list[discovery.Registry] = []
    address = cluster.client_urls[0].removeprefix("http://")

    def make(scheme: str, **options: object) -> discovery.Registry:
        registry = discovery.connect(f"{scheme}://{address}{root}", **{"timeout": TIMEOUT, **options})
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


def refused(action: Callable[[], object], key: str) -> PermissionDenied:
    """Run ``action``; it must raise PermissionDenied naming ``key`` within the timeout."""
    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        action()
    assert time.monotonic() - started < TIMEOUT
    assert caught.value.key == key
    assert caught.value.orig is not None or "watch" in str(caught.value)
    return caught.value


SCHEMES = pytest.mark.parametrize("scheme", ["etcd", "etcd2"], ids=["v3", "v2"])


def put_as_root(admin: Admin, scheme: str, root: str, key: str, value: str) -> None:
    if scheme == "etcd":
        admin.v3("/v3/kv/put", {"key": b64(f"{root}/{key}".encode()), "value": b64(value.encode())})
    else:
        admin.v2("PUT", f"/v2/keys{root}/{key}", data={"value": value})


@pytest.mark.parametrize(
    "exc",
    [
        GatewayError(7, "etcdserver: permission denied", 403),
        GatewayError(3, "etcdserver: permission denied", 400),
    ],
    ids=["by-code", "by-message"],
)
def test_a_refused_permission_names_the_key(exc: GatewayError) -> None:
    with pytest.raises(PermissionDenied) as caught, keyed(V3_ERRORS, "put", "svc/h1"):
        raise exc
    assert caught.value.key == "svc/h1"
    assert caught.value.orig is exc and caught.value.__cause__ is exc
    assert "'svc/h1'" in str(caught.value)
    # Without a key, as a bare translation gives it.
    bare = V3_ERRORS.translate(exc, "put")
    assert isinstance(bare, PermissionDenied) and bare.key == ""


@SCHEMES
def test_inside_the_grant_register_update_and_watch(scheme: str, admin: Admin, connect: Connect, root: str) -> None:
    user = admin.user(scheme, root, read_write=["team"], read=["shared"])
    registry = connect(scheme, user=user, password="pw")
    with registry.watch("team") as team, registry.watch("shared") as shared:
        registration = registry.register("team/api", "h1", address="10.0.0.1", port=80)
        registration.update(meta={"v": 2})
        put_as_root(admin, scheme, root, "shared/db/h9", '{"address": "10.0.0.9", "port": 5432}')
        kinds = [team.get(10), team.get(10)]
        assert [event.kind if event else None for event in kinds] == [EventKind.ADDED, EventKind.UPDATED]
        seen = shared.get(10)
        assert seen is not None and (seen.kind, seen.instance_id) == (EventKind.ADDED, "h9")
        registration.close()
        gone = team.get(10)
        assert gone is not None and gone.kind is EventKind.REMOVED
    assert [i.id for i in registry.instances("shared/db")] == ["h9"]


@SCHEMES
def test_writes_outside_the_grant_are_refused_and_change_nothing(
    scheme: str, admin: Admin, connect: Connect, root: str
) -> None:
    user = admin.user(scheme, root, read_write=["team"], read=["shared"])
    put_as_root(admin, scheme, root, "shared/db/h9", '{"address": "10.0.0.9", "port": 5432}')
    put_as_root(admin, scheme, root, "other/db/h8", '{"address": "10.0.0.8", "port": 5432}')
    registry = connect(scheme, user=user, password="pw")
    before = admin.stored(root)
    refused(lambda: registry.register("shared/db", "h1"), "shared/db/h1")
    refused(lambda: registry.deregister("shared/db", "h9"), "shared/db/h9")
    refused(lambda: registry.define("shared/db"), "shared/db/_definition")
    refused(lambda: registry.register("other/db", "h1"), "other/db/h1")
    refused(lambda: registry.deregister("other/db", "h8"), "other/db/h8")
    error = refused(lambda: registry.watch("other"), "other")
    assert isinstance(error, AuthenticationFailed)
    refused(lambda: registry.snapshot("other/db"), "other/db")
    assert admin.stored(root) == before
    # Inside the grant all goes on, on the same registry.
    registry.register("team/api", "h1")
    assert [i.id for i in registry.instances("team/api")] == ["h1"]


def test_v2_cannot_tell_a_missing_grant_before_the_credentials_are_proven(
    admin: Admin, connect: Connect, root: str, cluster: EtcdCluster
) -> None:
    # etcd v2 answers a wrong password and a missing grant with the same 401.
    name = f"u{uuid.uuid4().hex[:8]}"
    kv = {"read": [f"{root}/team/*"], "write": [f"{root}/team/*"]}
    admin.v2("PUT", f"/v2/auth/roles/{name}", json={"role": name, "permissions": {"kv": kv}})
    admin.v2("PUT", f"/v2/auth/users/{name}", json={"user": name, "password": "pw", "roles": [name]})
    wrong = connect("etcd2", user=name, password="wrong")
    with pytest.raises(AuthenticationFailed) as caught:
        wrong.register("other/db", "h1")
    assert not isinstance(caught.value, PermissionDenied)
    fresh = connect("etcd2", user=name, password="pw")
    with pytest.raises(AuthenticationFailed) as caught:
        fresh.register("other/db", "h1")
    assert not isinstance(caught.value, PermissionDenied)
    # Once etcd accepted the credentials, a 401 is a missing grant.
    fresh.register("team/api", "h1")
    refused(lambda: fresh.register("other/db", "h1"), "other/db/h1")


@SCHEMES
def test_a_watch_whose_grant_is_revoked_breaks_with_permission_denied(
    scheme: str, admin: Admin, connect: Connect, root: str
) -> None:
    user = admin.user(scheme, root, read_write=["team"], read=["shared"])
    registry = connect(scheme, user=user, password="pw", reconnect_timeout=120)
    watch = registry.watch("shared")
    put_as_root(admin, scheme, root, "shared/db/h1", "{}")
    first = watch.get(10)
    assert first is not None and first.instance_id == "h1"
    admin.revoke_read(scheme, user, root, "shared")
    revoked = time.monotonic()
    # etcd 3.4 goes on delivering to a v3 watch after the revocation: writes keep coming meanwhile.
    with pytest.raises(WatchBroken) as caught:
        for count in range(40):
            put_as_root(admin, scheme, root, f"shared/db/h{count + 2}", "{}")
            watch.get(0.5)
    # Well before reconnect_timeout: v3 checks the grant every `timeout` s, v2 at its next long poll (<= 5 s).
    assert time.monotonic() - revoked < 10
    cause = caught.value.__cause__
    assert isinstance(cause, PermissionDenied) and cause.key == "shared"
    assert watch.broken is caught.value
    registry.register("team/api", "h1")  # the registry itself goes on


@SCHEMES
def test_a_watch_reopened_without_its_grant_breaks_at_once(
    scheme: str, admin: Admin, connect: Connect, root: str
) -> None:
    user = admin.user(scheme, root, read_write=["team"], read=["shared"])
    # The grant is checked every 30 s only: the reopen finds the revocation first.
    registry = connect(scheme, user=user, password="pw", timeout=15, reconnect_timeout=120)
    watch = registry.watch("shared")
    admin.revoke_read(scheme, user, root, "shared")
    started = time.monotonic()
    watch.request_resync()
    with pytest.raises(WatchBroken) as caught:
        while watch.next_item(1) is not None or time.monotonic() - started < 10:
            pass
    assert time.monotonic() - started < 3
    cause = caught.value.__cause__
    assert isinstance(cause, PermissionDenied) and cause.key == "shared"


def test_v3_tokens_expire_and_are_renewed(admin: Admin, connect: Connect, root: str) -> None:
    user = admin.user("etcd", root, read_write=["team"], read=[])
    writer = connect("etcd", user=user, password="pw")
    # Its grant check every 5 s leaves its token unused longer than the token's life too.
    watcher = connect("etcd", user=user, password="pw", timeout=5)
    watch = watcher.watch("team")
    registration = writer.register("team/api", "h1", ttl=TOKEN_TTL * 3)
    added = watch.get(10)
    assert added is not None and added.kind is EventKind.ADDED
    tokens: dict[str, set[str]] = {"writer": set(), "watcher": set()}
    for round_ in range(4):
        time.sleep(TOKEN_TTL + 1.5)  # the writer's token expires unused (keep-alives need none)
        registration.update(meta={"round": round_})
        updated = watch.get(10)
        assert updated is not None and updated.kind is EventKind.UPDATED
        assert updated.instance is not None and updated.instance.meta == {"round": round_}
        for name, registry in (("writer", writer), ("watcher", watcher)):
            backend: Any = registry.backend
            tokens[name].update(backend.client._tokens.values())
        if round_ == 1:
            # A stream opened again after an expiry authenticates afresh.
            watch.request_resync()
    assert len(tokens["writer"]) >= 4, "each expiry needs a new token"
    assert len(tokens["watcher"]) >= 2
    assert registration.alive and watch.connected and watch.broken is None
    assert [i.meta for i in writer.instances("team/api")] == [{"round": 3}]
