"""The core's promises under abuse: raising listeners, dying threads, dead servers, hostile input.

Each test here is a regression test for a defect a hostile first hour found
(issue 11); the scenarios every backend must pass live in the conformance
suite instead, and run against the real servers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery import DiscoveryError, InvalidInput, InvalidMeta, InvalidOption, InvalidValue, WatchBroken, connect
from discovery._codec import decode_instance
from discovery.errors import shown
from discovery.testing.memory import registry_on
from discovery.testing.waiting import wait_until
from tests.helpers import DyingKeepAliveBackend, LazyDeadBackend


def _url(**query: object) -> str:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return f"memory://hardening-{uuid.uuid4().hex[:8]}/r" + (f"?{suffix}" if suffix else "")


def test_dead_keep_alive_is_reported_and_its_instances_come_back(caplog: pytest.LogCaptureFixture) -> None:
    url = _url()
    with caplog.at_level(logging.CRITICAL, "discovery.background"), registry_on(DyingKeepAliveBackend, url) as reg:
        lease = reg.register("svc", "a", ttl=1)
        backend = reg.backend
        assert isinstance(backend, DyingKeepAliveBackend)
        wait_until(lambda: len(backend._sessions) >= 2 and lease.alive, 30, message="re-registered on a new session")
        with connect(url) as other:
            wait_until(lambda: [i.id for i in other.instances("svc")] == ["a"], 30, message="instance on the store")
    assert any("died" in record.getMessage() for record in caplog.records)


def test_listener_raising_in_the_session_listener_chain_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    url = _url()
    with connect(url) as reg, connect(url) as other:
        lease = reg.register("svc", "a", ttl=1)
        lease.on_change(lambda _r, _alive: 1 / 0)
        with caplog.at_level(logging.ERROR, "discovery.background"):
            reg.backend.expire_sessions()  # type: ignore[attr-defined]
            wait_until(lambda: lease.alive and other.instances("svc"), 30, message="re-registered")
        assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


def test_stream_that_never_proves_the_server_alive_is_broken_in_time() -> None:
    """A client that opens streams without contacting the server must not make a dead server look alive."""
    timeout = 1.5
    with registry_on(LazyDeadBackend, _url(reconnect_timeout=timeout)) as reg:
        backend = reg.backend
        assert isinstance(backend, LazyDeadBackend)
        with reg.watch("svc") as watch:
            opened_before = backend.opened
            backend.server_gone = True
            started = time.monotonic()
            watch.request_resync("test")  # the watch reopens its stream
            with pytest.raises(WatchBroken) as caught:
                while True:
                    watch.get(30)
            elapsed = time.monotonic() - started
    assert "no confirmed stream" in caught.value.reason
    assert timeout <= elapsed < timeout + 5
    # Backing off, not spinning: a handful of attempts, not thousands.
    assert backend.opened - opened_before < 20


def test_since_beyond_any_revision_is_refused() -> None:
    with connect(_url()) as reg, pytest.raises(InvalidValue) as caught:
        reg.watch("svc", since=2**70)
    assert caught.value.field == "since"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("etcd://[::1/x", {}),
        ("etcd://", {}),
        ("etcd://,,,/x", {}),
        ("etcd://127.0.0.1:2379,/x", {}),
        ("etcd://user:secret-pw@127.0.0.1:99999/x", {}),
        ("memory://user:secret-pw@x", {}),
        ("zookeeper://127.0.0.1:2181/../x", {}),
        ("zookeeper://127.0.0.1:2181/a/./b", {}),
        ("memory://", {"reconnect_timeout": float("nan")}),
        ("memory://", {"default_ttl": "nan"}),
        ("memory://?reconnect_timeout=inf", {}),
        ("zookeeper://127.0.0.1:2181/x", {"session_timeout": "nan"}),
        ("memory://", {"meta_limit": 10**9}),
    ],
)
def test_bad_urls_and_options_are_typed_errors_naming_the_field(url: str, options: dict[str, object]) -> None:
    with pytest.raises(InvalidOption) as caught:
        connect(url, **options)
    assert caught.value.option in {"url", *options, "reconnect_timeout"}
    assert "secret-pw" not in str(caught.value)


def test_config_file_that_is_not_utf8_is_a_configuration_error(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "discovery.toml"  # type: ignore[operator]
    path.write_bytes(b'[registry]\nurl = "memory://\xff"\n')
    with pytest.raises(DiscoveryError) as caught:
        connect(config=path)
    assert "discovery.toml" in str(caught.value)


@pytest.mark.parametrize(
    "meta",
    [
        {"deep": json.loads("[" * 500 + "]" * 500)},
        {"huge": 10**5000},
        {"big": 2**64},
        {"surrogate": "a\ud800b"},
        {"a\udfffb": 1},
        {"inf": math.inf},
        {"set": {1, 2}},
    ],
)
def test_meta_that_is_not_plain_json_is_refused_with_a_safe_message(meta: dict[str, object]) -> None:
    with connect(_url()) as reg:
        with pytest.raises(InvalidMeta) as caught:
            reg.register("svc", "a", meta=meta)
        assert caught.value.field == "meta" and len(str(caught.value)) < 400
        assert reg.snapshot().instances == ()


def test_meta_nested_deeper_than_the_interpreter_allows_is_refused() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100_000):
        child: dict[str, object] = {}
        node["x"] = child
        node = child
    with connect(_url()) as reg, pytest.raises(InvalidMeta, match="nested deeper"):
        reg.register("svc", "a", meta=deep)


def test_a_lone_surrogate_written_by_another_tool_is_read_as_text() -> None:
    instance = decode_instance("svc", "a", b'{"meta": {"k": "x\\ud800y"}, "address": "h"}', 1)
    json.dumps(dict(instance.meta), ensure_ascii=False).encode("utf-8")
    assert instance.address == "h" and instance.meta["k"].startswith("x")


def test_shown_never_raises() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(100_000):
        child: list[object] = []
        node.append(child)
        node = child
    assert len(shown(deep)) <= 80
    assert "bits" in shown(10**5000)


_NAME = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["..", ".", "_x", "a/b", "", "~_definition", "a b"]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["etcd", "etcd2", "zookeeper", "zk", "memory", "nope"]),
    netloc=st.text(st.sampled_from("ab1:[],@.%/"), max_size=14),
    path=st.text(st.sampled_from("ab./_~%"), max_size=8),
    option=st.sampled_from(["default_ttl", "reconnect_timeout", "meta_limit", "buffer_size", "timeout", "bogus"]),
    value=st.one_of(st.floats(), st.integers(), st.text(max_size=6), st.booleans()),
)
def test_any_url_and_option_either_resolves_or_raises_a_typed_error(
    scheme: str, netloc: str, path: str, option: str, value: object
) -> None:
    from discovery._config import resolve

    with contextlib.suppress(DiscoveryError):
        resolve(f"{scheme}://{netloc}/{path}", None, {option: value})


@settings(max_examples=300, deadline=None)
@given(service=_NAME, instance_id=_NAME, meta=st.dictionaries(st.text(max_size=6), _JSON, max_size=4))
def test_any_name_and_meta_either_registers_or_raises_a_typed_error(
    service: str, instance_id: str, meta: dict[str, object]
) -> None:
    with connect("memory://hypothesis/r") as reg:
        try:
            lease = reg.register(service, instance_id, meta=meta)
        except InvalidInput:
            return
        stored = reg.instances(service)
        assert [i.id for i in stored] == [instance_id]
        json.dumps(dict(stored[0].meta), ensure_ascii=False).encode("utf-8")
        lease.close()


def test_a_repeating_failure_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    from discovery._background import RateLimitedLog

    log = RateLimitedLog(logging.getLogger("discovery.test"), interval=60)
    with caplog.at_level(logging.INFO, "discovery.test"):
        for _ in range(100):
            log.warn("svc/a", "cannot re-register %s", "svc/a")
        log.warn("svc/b", "cannot re-register %s", "svc/b")
        log.clear("svc/a")
        log.warn("svc/a", "cannot re-register %s", "svc/a")
    expected = ["cannot re-register svc/a", "cannot re-register svc/b", "cannot re-register svc/a"]
    assert [r.getMessage() for r in caplog.records] == expected
