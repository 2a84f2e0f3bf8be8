"""Hostile input (issue 16, point 5): accepted and read back exactly, or refused naming the field, nothing changed.

Property-based, with hypothesis, over everything a caller or another tool
can hand the registry: service names, instance ids, addresses, ports, ttls
and meta (on the memory backend, then on etcd v3, etcd v2 and ZooKeeper for
fewer examples), read calls and their arguments, URLs with credentials and
options, config files (structured tables and raw bytes), sizes around each
backend's limits (refused before sending, the limit named; at the limit, the
real server takes it), and keys of arbitrary bytes written under the root by
raw clients while a watch and a cache are open.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from kazoo.client import KazooClient

import discovery
from discovery._codec import instance_key
from discovery._config import CORE_OPTIONS, resolve
from discovery._secrets import is_secret
from discovery._validation import VALUE_OVERHEAD
from discovery.dashboard import create_app, running
from discovery.errors import (
    ConfigurationError,
    InvalidInput,
    InvalidMeta,
    InvalidName,
    InvalidOption,
    NotFound,
    UnknownBackend,
)
from discovery.models import Event, Instance
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.waiting import wait_until

FIELDS = {"service", "instance_id", "meta", "address", "port", "ttl"}

# kazoo's reconnection back-off draws from the random module in its own threads, which
# hypothesis notices while it generates an example; the examples do not depend on it.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

# -- strategies ------------------------------------------------------------------------

_NAME_CHARS = st.one_of(
    st.characters(categories=("L", "N")),
    st.sampled_from(list("._:@+=-~")),
)
_HOSTILE_CHARS = st.one_of(
    st.characters(),  # anything: controls, surrogates, private use, unassigned
    st.sampled_from(["/", " ", "\x00", "\x7f", "\x85", "\ud800", "\ue000", "\ufff0", "\U0010ffff", "_", "\u200b"]),
)
_SEGMENTS = st.one_of(
    st.text(_NAME_CHARS, min_size=1, max_size=10),
    st.text(_HOSTILE_CHARS, max_size=10),
    st.sampled_from(["", ".", "..", "_definition", "~_definition", "a" * 128, "a" * 129, "中" * 128]),
)
SERVICES = st.one_of(
    st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join),
    st.sampled_from(["/", "a//b", "/a", "a/", "/".join("a" * 17), "base/svc/keep"]),
    st.none(),
    st.integers(),
    st.binary(max_size=4),
)
INSTANCE_IDS = st.one_of(_SEGMENTS, st.none(), st.integers())
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats()
    | st.text(st.characters(), max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)
METAS = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(st.characters(), max_size=8) | st.sampled_from(["weight", "zone", "tags"]), _JSON, max_size=4
    ),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=3),
)
ADDRESSES = st.one_of(
    st.none(), st.text(_HOSTILE_CHARS, max_size=20), st.text(min_size=250, max_size=260), st.integers()
)
PORTS = st.one_of(st.none(), st.integers(-10, 70_000), st.booleans(), st.floats(), st.text(max_size=5))
TTLS = st.one_of(st.none(), st.floats(), st.integers(-5, 100_000), st.booleans(), st.text(max_size=3))

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_VALID_SEGMENTS = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda t: not t.startswith("_"))
_VALID = {
    "service": st.lists(_VALID_SEGMENTS, min_size=1, max_size=4).map("/".join),
    "instance_id": _VALID_SEGMENTS,
    "address": st.none() | st.text(st.sampled_from("abcxyz0129.-:"), min_size=1, max_size=30),
    "port": st.none() | st.integers(1, 65_535),
    "meta": st.none()
    | st.dictionaries(
        _TEXT.filter(lambda k: k not in ("weight", "zone", "tags")),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | _TEXT,
            lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
            max_leaves=10,
        ),
        max_size=4,
    ),
    "ttl": st.none() | st.floats(1.0, 3600.0) | st.integers(1, 3600),
}
_HOSTILE = {
    "service": SERVICES,
    "instance_id": INSTANCE_IDS,
    "address": ADDRESSES,
    "port": PORTS,
    "meta": METAS,
    "ttl": TTLS,
}


@st.composite
def _registrations(draw: st.DrawFn) -> dict[str, Any]:
    """The arguments of a register() call: valid ones, of which up to two fields are replaced by hostile values."""
    case = {name: draw(strategy) for name, strategy in _VALID.items()}
    for name in draw(st.sets(st.sampled_from(sorted(_HOSTILE)), max_size=2)):
        case[name] = draw(_HOSTILE[name])
    return case


def _same_instance(instance: Instance, address: Any, port: Any, meta: Any) -> bool:
    return (instance.address, instance.port, dict(instance.meta)) == (address, port, meta or {})


def _state(registry: discovery.Registry) -> tuple[Instance, ...]:
    return registry.snapshot().instances


def _register_or_refuse(
    registry: discovery.Registry, service: Any, instance_id: Any, address: Any, port: Any, meta: Any, ttl: Any
) -> None:
    """Register, then read back through instances(), snapshot() and a watch; or check the refusal."""
    before = _state(registry)
    with registry.watch("") as watch:
        try:
            registration = registry.register(service, instance_id, address=address, port=port, meta=meta, ttl=ttl)
        except InvalidInput as exc:
            event(f"refused: {exc.field}")
            assert exc.field.split(".")[0] in FIELDS, exc
            assert exc.field in str(exc)
            assert _state(registry) == before
            return
        event("accepted")
        try:
            (found,) = [i for i in registry.instances(service) if i.id == instance_id]
            assert _same_instance(found, address, port, meta)
            assert found in registry.snapshot(service).instances
            added = watch.get(30)
            assert added is not None and added.instance is not None
            assert (added.service, added.instance_id) == (service, instance_id)
            assert _same_instance(added.instance, address, port, meta)
        finally:
            registration.close()
    wait_until(lambda: _state(registry) == before, 30, message="the registration is gone again")


@contextlib.contextmanager
def _memory_registry(**options: Any) -> Iterator[discovery.Registry]:
    with discovery.connect(f"memory://hostile-input/r{uuid.uuid4().hex[:12]}", **options) as registry:
        registry.register("base/svc", "keep", address="10.0.0.1", port=1, meta={"k": "v"})
        registry.define("base/svc", 2)
        yield registry


# -- registrations and reads on the memory backend ------------------------------------


@settings(max_examples=400, deadline=None)
@given(case=_registrations())
def test_a_registration_round_trips_or_is_refused_naming_the_field(case: dict[str, Any]) -> None:
    with _memory_registry() as registry:
        _register_or_refuse(registry, **case)


_CALLS: dict[str, tuple[Callable[[discovery.Registry, Any, Any], Any], set[str]]] = {
    "instances": (lambda r, a, b: r.instances(a), {"service"}),
    "snapshot": (lambda r, a, b: r.snapshot(a), {"prefix"}),
    "status": (lambda r, a, b: r.status(a), {"prefix"}),
    "definitions": (lambda r, a, b: r.definitions(a), {"prefix"}),
    "watch": (lambda r, a, b: r.watch(a, since=b).close(), {"prefix", "since"}),
    "watch buffer": (lambda r, a, b: r.watch(a, buffer_size=b).close(), {"prefix", "buffer_size"}),
    "cache": (lambda r, a, b: r.cache(a).close(), {"prefix"}),
    "define": (lambda r, a, b: r.define(a, b), {"service", "min_instances"}),
    "undefine": (lambda r, a, b: r.undefine(a), {"service"}),
    "deregister": (lambda r, a, b: r.deregister(a, b), {"service", "instance_id"}),
}


@settings(max_examples=300, deadline=None)
@given(
    call=st.sampled_from(sorted(_CALLS)),
    first=SERVICES | st.sampled_from(["", "base", "base/svc"]),
    second=st.one_of(INSTANCE_IDS, st.integers(-(2**70), 2**70), st.floats(), st.sampled_from(["keep", 1, 0])),
)
def test_a_call_works_or_is_refused_naming_its_argument(call: str, first: Any, second: Any) -> None:
    action, fields = _CALLS[call]
    with _memory_registry() as registry:
        before, definitions = _state(registry), registry.definitions()
        writes = call in ("define", "undefine", "deregister")
        try:
            action(registry, first, second)
        except InvalidInput as exc:
            assert exc.field in fields, exc
            assert (_state(registry), registry.definitions()) == (before, definitions)
            return
        except NotFound:
            assert writes
            assert (_state(registry), registry.definitions()) == (before, definitions)
            return
        if call == "define":
            assert registry.definitions()[first] == second
        if not writes:
            assert (_state(registry), registry.definitions()) == (before, definitions)


# -- URLs and options -------------------------------------------------------------------

_SENTINEL_START, _SENTINEL_END = "Pw9", "9wP"
_SCHEMES = ("etcd", "etcd2", "zk", "zookeeper", "memory")
_VALID_OPTIONS = {
    "etcd": {"timeout": "2.5", "protocol": "http"},
    "etcd2": {"timeout": "2.5"},
    "zk": {"session_timeout": "4", "connect_timeout": "3"},
    "zookeeper": {"session_timeout": "4"},
    "memory": {"history_window": "10"},
}
_CORE_VALUES = {"default_ttl": "5", "buffer_size": "100", "reconnect_timeout": "7"}
_OPTION_NAMES = sorted({*CORE_OPTIONS, "timeout", "user", "password", "auth_digest", "session_timeout", "ca", "key"})
_PLAIN = st.text(st.sampled_from("abcxyz019-"), min_size=1, max_size=8)
_HOSTILE_PARTS = ("scheme", "userinfo", "hosts", "root", "query")


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _secret(draw: st.DrawFn) -> str:
    return f"{_SENTINEL_START}{draw(st.text(st.characters(exclude_categories=('Cs',)), max_size=8))}{_SENTINEL_END}"


@st.composite
def _urls(draw: st.DrawFn) -> tuple[str, set[str], dict[str, Any]]:
    """``(url, hostile parts, what a valid URL must resolve to)``; every password carries sentinels."""
    hostile = draw(st.sets(st.sampled_from(_HOSTILE_PARTS), max_size=2))
    scheme = draw(st.sampled_from(_SCHEMES))
    expected: dict[str, Any] = {"options": {}}
    shown_scheme = (
        draw(st.sampled_from(["nope", "ETCD", "zk2"]) | st.text(max_size=4)) if "scheme" in hostile else scheme
    )
    userinfo = ""
    if "userinfo" in hostile:
        userinfo = f"{draw(st.text(max_size=4))}:{_secret(draw)}@"
    elif scheme != "memory" and draw(st.booleans()):
        user, password = draw(_PLAIN), _secret(draw)
        userinfo = f"{_quote(user)}:{_quote(password)}@"
        credentials = (
            {"user": user, "password": password} if "etcd" in scheme else {"auth_digest": f"{user}:{password}"}
        )
        expected["options"].update(credentials)
    if "hosts" in hostile:
        parts = draw(st.lists(st.tuples(st.text(max_size=6), st.none() | st.text(max_size=5)), max_size=3))
        netloc = ",".join(host if port is None else f"{host}:{port}" for host, port in parts)
    elif scheme == "memory":
        netloc = draw(_PLAIN)
        expected["hosts"] = ((netloc, 0),)
    else:
        pairs = draw(st.lists(st.tuples(_PLAIN | st.just("[::1]"), st.integers(1, 65_535)), min_size=1, max_size=3))
        netloc = ",".join(f"{host}:{port}" for host, port in pairs)
        expected["hosts"] = tuple((host.strip("[]"), port) for host, port in pairs)
    if "root" in hostile:
        root = "/".join(draw(st.lists(st.text(st.characters() | st.sampled_from("%.@#?/"), max_size=5), max_size=3)))
    else:
        segments = st.text(
            st.characters(categories=("L", "N")) | st.sampled_from(list("._:+=-~")), min_size=1, max_size=6
        )
        root = "/".join(draw(st.lists(segments, max_size=3)))
        root = root if all(segment not in (".", "..") for segment in root.split("/")) else "r"
        expected["root"] = f"/{root}" if root else ""
    query: list[tuple[str, str]] = []
    if "query" in hostile:
        for name in draw(st.lists(st.sampled_from(_OPTION_NAMES) | st.text(max_size=6), min_size=1, max_size=3)):
            # A secret's value, or an unknown option's (a mistyped password?), must never be shown.
            hidden = is_secret(name) or name not in _OPTION_NAMES
            query.append((_quote(name), _quote(_secret(draw)) if hidden else _quote(draw(st.text(max_size=6)))))
    else:
        given = {**_VALID_OPTIONS[scheme], **_CORE_VALUES}
        chosen = draw(st.lists(st.sampled_from(sorted(given)), unique=True, max_size=3))
        query = [(name, given[name]) for name in chosen]
        expected["options"].update({name: given[name] for name in chosen})
    url = f"{shown_scheme}://{userinfo}{netloc}/{root}"
    if query:
        url += "?" + "&".join(f"{name}={value}" for name, value in query)
    return url, hostile, expected


def _no_sentinel(*texts: str) -> None:
    for text in texts:
        assert _SENTINEL_START not in text and _SENTINEL_END not in text, text


@settings(max_examples=500, deadline=None)
@given(case=_urls())
def test_a_url_resolves_exactly_or_is_refused_naming_the_option_and_never_shows_a_password(
    case: tuple[str, set[str], dict[str, Any]],
) -> None:
    url, hostile, expected = case
    try:
        resolved = resolve(url, None, {})
    except UnknownBackend as exc:
        assert "scheme" in hostile
        _no_sentinel(str(exc), repr(exc))
        return
    except InvalidOption as exc:
        event(f"refused: {exc.option if exc.option in ('url', *_OPTION_NAMES) else 'unknown option'}")
        assert hostile, f"a valid URL was refused: {exc}"
        query = url.partition("?")[2].partition("#")[0]
        named = {urllib.parse.unquote(part.partition("=")[0]) for part in query.split("&")}
        assert exc.option in {"url", "user", "password", "auth_digest", *named}, exc
        _no_sentinel(str(exc), repr(exc), repr(exc.value))
        return
    event("accepted" if not hostile else "accepted despite hostile parts")
    _no_sentinel(resolved.url, repr(resolved), repr(resolved.target))
    if hostile:
        return
    target, settings_ = resolved.target, resolved.settings
    assert (target.hosts, target.root) == (expected["hosts"], expected["root"])
    for name, value in expected["options"].items():
        got = getattr(settings_, name) if name in CORE_OPTIONS else target.options[name]
        assert str(got) == value or got == float(value), (name, got, value)


_TOML_KEYS = st.one_of(
    st.sampled_from(sorted({*CORE_OPTIONS, "url", "timeout", "user", "password", "password_file", "passwrd", "key"})),
    st.text(max_size=8),
)
_TOML_VALUES = st.recursive(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.sampled_from(["etcd://127.0.0.1:2379/r", "zk://ops:Sk7x7kS@h/r", "memory://", "nope://", "etcd://"]),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=4), children, max_size=2),
    max_leaves=4,
)


def _toml_string(text: str) -> str:
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c for c in text
    )
    return f'"{escaped}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@contextlib.contextmanager
def _config_file(content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "discovery.toml"
        path.write_bytes(content)
        path.chmod(0o600)
        saved = os.environ.pop("DISCOVERY_URL", None)
        try:
            yield path
        finally:
            if saved is not None:
                os.environ["DISCOVERY_URL"] = saved


@settings(max_examples=200, deadline=None)
@given(table=st.dictionaries(_TOML_KEYS, _TOML_VALUES, max_size=5))
def test_a_config_table_resolves_exactly_or_is_refused_naming_the_key(table: dict[str, Any]) -> None:
    text = "[registry]\n" + "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in table.items())
    with _config_file(text.encode()) as path:
        try:
            resolved = resolve(None, path, {})
        except InvalidOption as exc:
            assert exc.option in table or exc.option in {n[: -len("_file")] for n in table if n.endswith("_file")}
            assert "Sk7x7kS" not in str(exc)
            return
        except ConfigurationError as exc:
            assert "Sk7x7kS" not in str(exc)
            return
    assert "Sk7x7kS" not in resolved.url + repr(resolved)
    for name, value in table.items():
        if name == "url":
            continue
        got = getattr(resolved.settings, name) if name in CORE_OPTIONS else resolved.target.options[name]
        assert got == value or (isinstance(value, str) and str(got) == value.strip().lower())


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=120) | st.text(max_size=60).map(lambda t: f"[registry]\n{t}".encode()))
def test_any_config_file_resolves_or_is_a_configuration_error(content: bytes) -> None:
    with _config_file(content) as path, contextlib.suppress(ConfigurationError):
        resolve(None, path, {})


# -- limits ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(40, 400),
    offset=st.integers(-4, 4),
    filler=st.sampled_from(["x", "é", '"', "中", "\U00010000", "\\"]),
)
def test_meta_is_refused_above_the_limit_and_the_error_says_the_limit(limit: int, offset: int, filler: str) -> None:
    base = {"k": ""}
    size = len(json.dumps(base, separators=(",", ":")).encode())
    unit = len(json.dumps(filler).encode()) - 2
    count = max(0, (limit + offset - size) // unit)
    meta = {"k": filler * count}
    encoded = len(json.dumps(meta, separators=(",", ":")).encode())
    with _memory_registry(meta_limit=limit) as registry:
        before = _state(registry)
        try:
            registry.register("svc", "a", meta=meta).close()
        except InvalidMeta as exc:
            assert encoded > limit and exc.field == "meta" and f"limit of {limit}" in str(exc)
            assert _state(registry) == before
        else:
            assert encoded <= limit


@settings(max_examples=50, deadline=None)
@given(scheme=st.sampled_from(["memory", "etcd", "etcd2", "zk"]), offset=st.integers(-3, 3))
def test_meta_limit_cannot_exceed_the_backends_largest_value(scheme: str, offset: int) -> None:
    backend = resolve(f"{scheme}://127.0.0.1:1/r", None, {}).backend
    cap = backend.max_value_bytes - VALUE_OVERHEAD
    try:
        resolved = resolve(f"{scheme}://127.0.0.1:1/r", None, {"meta_limit": cap + offset})
    except InvalidOption as exc:
        assert offset > 0 and exc.option == "meta_limit" and str(cap) in str(exc)
    else:
        assert offset <= 0 and resolved.settings.meta_limit == cap + offset


def _name_of_key_size(backend: Any, target: int, filler: str) -> tuple[str, str] | None:
    """A service (``filler`` characters in segments of 128) and an ASCII id whose key is ``target`` bytes, if any."""
    for count in range(16 * 128, 0, -1):
        chars = filler * count
        service = "/".join(chars[i : i + 128] for i in range(0, count, 128))
        length = target - backend.key_size(instance_key(service, "a")) + 1
        if length < 1:
            continue
        if length > 128:
            return None
        instance_id = "a" * length
        if backend.key_size(instance_key(service, instance_id)) == target:
            return service, instance_id
    return None


def _probe_key_limit(registry: discovery.Registry, offset: int, filler: str) -> None:
    backend = registry.backend
    names = _name_of_key_size(backend, backend.max_key_bytes + offset, filler)
    assume(names is not None)
    assert names is not None
    service, instance_id = names
    before = _state(registry)
    try:
        registration = registry.register(service, instance_id, ttl=10)
    except InvalidName as exc:
        assert offset > 0 and exc.field in ("service", "instance_id") and str(backend.max_key_bytes) in str(exc)
        assert _state(registry) == before
        return
    assert offset <= 0
    assert [i.id for i in registry.instances(service)] == [instance_id]
    registration.close()


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(-4, 4), filler=st.sampled_from(["\U00010000", "中"]))
def test_keys_are_refused_above_the_memory_limit_naming_it(offset: int, filler: str) -> None:
    with _memory_registry() as registry:
        _probe_key_limit(registry, offset, filler)


# -- the same on real servers, fewer examples ------------------------------------------------


@pytest.fixture(scope="module", params=["etcd", "etcd2", "zookeeper"])
def server_url(request: pytest.FixtureRequest, etcd_cluster: EtcdCluster, zookeeper_cluster: ZooKeeperCluster) -> str:
    """The URL of a real server (one per backend), under a root of its own."""
    root = f"/hostile-{uuid.uuid4().hex[:8]}"
    if request.param == "zookeeper":
        return f"{zookeeper_cluster.url('zookeeper', root)}?session_timeout=6"
    return str(etcd_cluster.url(request.param, root))


@pytest.fixture(scope="module")
def server_registry(server_url: str) -> Iterator[discovery.Registry]:
    """A registry on :func:`server_url`."""
    with discovery.connect(server_url) as registry:
        registry.register("base/svc", "keep", address="10.0.0.1", port=1, meta={"k": "v"}, ttl=30)
        yield registry


_SERVER_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SERVER_SETTINGS
@given(case=_registrations())
def test_a_registration_round_trips_or_is_refused_on_real_servers(
    server_registry: discovery.Registry, case: dict[str, Any]
) -> None:
    _register_or_refuse(server_registry, **case)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(-3, 3), filler=st.sampled_from(["\U00010000", "中", "a"]))
def test_keys_at_the_etcd2_limit_are_taken_by_the_server_and_above_refused_before(
    etcd_cluster: EtcdCluster, offset: int, filler: str
) -> None:
    with discovery.connect(etcd_cluster.url("etcd2", f"/hostile-{uuid.uuid4().hex[:8]}")) as registry:
        _probe_key_limit(registry, offset, filler)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offset=st.integers(-2, 2))
def test_meta_at_the_servers_limit_is_taken_and_above_refused_before(server_url: str, offset: int) -> None:
    limit = resolve(server_url, None, {}).backend.max_value_bytes - VALUE_OVERHEAD
    overhead = len(json.dumps({"k": ""}, separators=(",", ":")))
    meta = {"k": "x" * (limit - overhead + offset)}
    with discovery.connect(server_url, meta_limit=limit) as registry:
        before = _state(registry)
        try:
            registration = registry.register("big", "a", address="a" * 255, port=65535, meta=meta, ttl=10)
        except InvalidMeta as exc:
            assert offset > 0 and f"limit of {limit}" in str(exc)
            assert _state(registry) == before
            return
        assert offset <= 0
        assert dict(registry.instances("big")[0].meta) == meta
        registration.close()


# -- foreign keys of arbitrary bytes -----------------------------------------------------------


def _visible(instances: tuple[Instance, ...]) -> set[tuple[str, str, Any, Any, str]]:
    return {(i.service, i.id, i.address, i.port, json.dumps(dict(i.meta), sort_keys=True)) for i in instances}


def _converges(registry: discovery.Registry, write_raw: Callable[[], None]) -> None:
    """A watch, a cache and the dashboard open while ``write_raw`` writes foreign keys: all keep working and agree."""
    registry.register("svc/a", "one", address="10.0.0.1", port=1, ttl=10)
    with registry.watch("") as watch, registry.cache("") as cache, running(create_app(registry, "")) as dashboard:
        assert cache.wait_ready(30)
        state = watch.snapshot
        write_raw()
        registry.register("svc/b", "two", address="10.0.0.2", port=2, ttl=10)
        deadline = time.monotonic() + 30
        while True:
            events: list[Event] = watch.get_batch(0.2)
            state = state.apply(events)
            fresh = _visible(registry.snapshot().instances)
            if _visible(state.instances) == fresh == _visible(cache.snapshot().instances):
                break
            assert time.monotonic() < deadline, "the watch or the cache did not converge"
        assert watch.broken is None and cache.broken is None and watch.connected
        assert {("svc/a", "one"), ("svc/b", "two")} <= {(s, i) for s, i, *_ in fresh}
        expected = {(s, i) for s, i, *_ in fresh}
        while True:  # the dashboard keeps a cache of its own: it converges too
            page = httpx.get(f"{dashboard}api/snapshot", timeout=10)
            assert page.status_code == 200
            if {(i["service"], i["id"]) for i in page.json()["instances"]} == expected:
                break
            assert time.monotonic() < deadline, "the dashboard did not converge"
            time.sleep(0.05)


_RAW_KEYS = st.lists(
    st.one_of(
        st.binary(max_size=24),
        st.lists(
            st.binary(max_size=6) | st.sampled_from([b"", b".", b"..", b"_definition", b"\xff\xfe"]), max_size=4
        ).map(b"/".join),
    ),
    min_size=1,
    max_size=12,
)
_RAW_VALUES = st.binary(max_size=40) | st.sampled_from([b"{", b'{"meta": 5}', b'{"port": "x"}', b"null", b'"\\ud800"'])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=_RAW_KEYS, values=st.lists(_RAW_VALUES, min_size=12, max_size=12))
def test_raw_etcd_keys_of_any_bytes_break_neither_watch_nor_cache(
    etcd_cluster: EtcdCluster, keys: list[bytes], values: list[bytes]
) -> None:
    root = f"/hostile-{uuid.uuid4().hex[:8]}"
    keys = [key for key in keys if not key.startswith(b"svc")]

    def write_raw() -> None:
        for key, value in zip(keys, values, strict=False):
            full = root.encode() + b"/" + key
            etcd_cluster.request(
                "/v3/kv/put", {"key": base64.b64encode(full).decode(), "value": base64.b64encode(value).decode()}
            )

    with discovery.connect(etcd_cluster.url("etcd", root)) as registry:
        _converges(registry, write_raw)


@pytest.fixture(scope="module")
def raw_zookeeper(zookeeper_cluster: ZooKeeperCluster) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper_cluster.hosts)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.lists(st.text(st.characters(), min_size=1, max_size=6), min_size=1, max_size=3), max_size=8),
    values=st.lists(_RAW_VALUES, min_size=8, max_size=8),
    ephemeral=st.booleans(),
)
def test_raw_znodes_of_any_names_and_data_break_neither_watch_nor_cache(
    zookeeper_cluster: ZooKeeperCluster,
    raw_zookeeper: KazooClient,
    names: list[list[str]],
    values: list[bytes],
    ephemeral: bool,
) -> None:
    root = f"/hostile-{uuid.uuid4().hex[:8]}"

    def write_raw() -> None:
        for segments, value in zip(names, values, strict=False):
            if segments[0].startswith("svc"):
                continue
            path = f"{root}/{'/'.join(segments)}"
            # Paths ZooKeeper itself refuses (kazoo's checks, the server's) are not what this is about.
            with contextlib.suppress(Exception):
                raw_zookeeper.ensure_path(path.rpartition("/")[0])
                raw_zookeeper.create(path, value, ephemeral=ephemeral)

    url = f"{zookeeper_cluster.url('zookeeper', root)}?session_timeout=6"
    with discovery.connect(url) as registry:
        try:
            _converges(registry, write_raw)
        finally:
            with contextlib.suppress(Exception):
                raw_zookeeper.delete(root, recursive=True)
