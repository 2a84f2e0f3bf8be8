"""The dashboard over HTTP on real registries: its snapshot, its event stream, the page's files, and the command.

Each test serves :func:`discovery.dashboard.create_app` with uvicorn in a
background thread on a free port and talks to it with httpx, as a browser
or a script would: the JSON snapshot, the Server-Sent Events stream (first
message a snapshot, then event, tree and state deltas; a reconnection with
``Last-Event-ID`` resumes with what it missed, or gets a fresh snapshot when
the ring no longer holds it), the static page and ``/metrics``. Registries
are memory in this process, and etcd and ZooKeeper through the session's
servers. The ``discovery dashboard`` command runs in a subprocess (the
loopback rule, a clean stop). No browser: the page's selectors are for the
browser tests.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import discovery
from discovery.dashboard import Dashboard, create_app, is_loopback, public_url, running
from discovery.servers import EtcdCluster, ZooKeeperCluster, free_ports
from discovery.testing.memory import registry_on
from discovery.testing.waiting import wait_until
from tests.cli.conftest import Cli
from tests.helpers import FlakyBackend

TIMEOUT = 15.0


@dataclass(frozen=True)
class Message:
    """One Server-Sent Events message."""

    id: str
    type: str
    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.id.rpartition("-")[2])


class Stream:
    """One connection to ``/events``, read by a thread; a test waits for messages with a deadline.

    The apps under test send a keep-alive comment every 0.2 s, so the reader
    notices :meth:`close` promptly without closing a socket under its feet.
    """

    def __init__(self, base: str, last_event_id: str | None = None, query: bool = False) -> None:
        headers = {} if last_event_id is None or query else {"Last-Event-ID": last_event_id}
        params = {"last_event_id": last_event_id} if query and last_event_id else {}
        self._client = httpx.Client(timeout=httpx.Timeout(TIMEOUT, read=None))
        self._context = self._client.stream("GET", f"{base}events", headers=headers, params=params)
        self.response = self._context.__enter__()
        self.messages: queue.Queue[Message | None] = queue.Queue()
        self.ended = threading.Event()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if self._closing.is_set():
                    return
                if not line:
                    if "data" in fields:
                        data = json.loads(fields["data"])
                        self.messages.put(Message(fields.get("id", ""), fields.get("event", "message"), data))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()
            self.messages.put(None)

    def next(self, timeout: float = TIMEOUT) -> Message:
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout:g} s") from None
        if message is None:
            self.messages.put(None)
            raise AssertionError("the stream ended")
        return message

    def until(self, predicate: Callable[[Message], bool], timeout: float = TIMEOUT) -> list[Message]:
        """The messages read up to and including the first that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        seen: list[Message] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such message within {timeout:g} s; read {[m.type for m in seen]}")
            seen.append(self.next(remaining))
            if predicate(seen[-1]):
                return seen

    def close(self) -> None:
        self._closing.set()
        self._reader.join(TIMEOUT)
        self._context.__exit__(None, None, None)
        self._client.close()


@contextmanager
def stream(base: str, last_event_id: str | None = None, query: bool = False) -> Iterator[Stream]:
    connection = Stream(base, last_event_id, query)
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def serving(registry: discovery.Registry, prefix: str = "", **options: Any) -> Iterator[tuple[str, Dashboard]]:
    """The dashboard of ``registry`` on a free loopback port: its base URL and its :class:`Dashboard`."""
    app = create_app(registry, prefix, keepalive=0.2, **options)
    with running(app, "127.0.0.1", free_ports(1)[0]) as base:
        yield base, app.state.dashboard


def events_of(messages: list[Message]) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["service"], e["id"]) for m in messages if m.type == "events" for e in m.data["events"]]


def ids_in(message: Message) -> set[str]:
    """The instance ids a message adds, or holds if it is a snapshot."""
    if message.type == "snapshot":
        return {i["id"] for i in message.data["instances"]}
    return {instance_id for kind, _service, instance_id in events_of([message]) if kind == "added"}


def node(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    if tree["path"] == path:
        return tree
    for child in tree["children"]:
        found = node(child, path)
        if found is not None:
            return found
    return None


def health(path: str, value: str) -> Callable[[Message], bool]:
    def check(message: Message) -> bool:
        if message.type not in ("tree", "snapshot"):
            return False
        found = node(message.data["tree"], path)
        return found is not None and found["health"] == value

    return check


def snapshot(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}api/snapshot", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def has_instance(base: str, service: str, instance_id: str) -> bool:
    return any((i["service"], i["id"]) == (service, instance_id) for i in snapshot(base)["instances"])


@pytest.fixture
def memory_registry() -> Iterator[discovery.Registry]:
    with discovery.connect(f"memory://dashboard-{uuid.uuid4().hex[:12]}") as registry:
        yield registry


@pytest.fixture(params=["memory", "etcd", "zookeeper"])
def registry(request: pytest.FixtureRequest) -> Iterator[discovery.Registry]:
    """A fresh registry on each backend."""
    if request.param == "memory":
        url = f"memory://dashboard-{uuid.uuid4().hex[:12]}"
    else:
        cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(f"{request.param}_cluster")
        url = cluster.url(request.param, f"/dashboard-{uuid.uuid4().hex[:10]}")
    with discovery.connect(url) as registry:
        yield registry


# -- the snapshot --------------------------------------------------------------


def test_api_snapshot_has_header_tree_and_instances(registry: discovery.Registry) -> None:
    registry.define("buzz/api", 2)
    registry.register("buzz/api", "h1", address="10.0.0.1", port=8080, meta={"zone": "eu-1"}, ttl=30)
    registry.register("other/api", "o1", ttl=30)
    with serving(registry, "buzz") as (base, _dashboard):
        body = snapshot(base)
    assert body["type"] == "snapshot"
    assert (body["backend"], body["url"], body["prefix"]) == (registry.backend.name, registry.url, "buzz")
    assert body["state"] == "connected"
    (instance,) = body["instances"]
    assert body["revision"] >= instance["revision"] > 0
    assert instance == {
        "service": "buzz/api",
        "id": "h1",
        "address": "10.0.0.1",
        "port": 8080,
        "meta": {"zone": "eu-1"},
        "revision": instance["revision"],
    }
    tree = body["tree"]
    assert (tree["path"], tree["health"], tree["reason"], tree["total"]) == ("buzz", "degraded", "subtree", 1)
    api = node(tree, "buzz/api")
    assert api is not None
    assert (api["health"], api["reason"], api["instances"], api["min"]) == ("degraded", "below-minimum", 1, 2)
    assert node(tree, "other") is None


def test_the_url_is_shown_without_credentials_or_options() -> None:
    assert public_url("etcd://10.0.0.1:2379/services?user=root&password=s3cret") == "etcd://10.0.0.1:2379/services"
    assert public_url("etcd://root:s3cret@h1:2379,h2:2379/x#frag") == "etcd://h1:2379,h2:2379/x"
    assert public_url("zookeeper://h:2181/services?auth_digest=u:p") == "zookeeper://h:2181/services"
    assert public_url("memory://") == "memory://"


def test_a_url_with_options_is_shown_without_them(memory_registry: discovery.Registry) -> None:
    name = f"dashboard-{uuid.uuid4().hex[:12]}"
    with discovery.connect(f"memory://{name}?buffer_size=500") as registry, serving(registry) as (base, _dashboard):
        assert snapshot(base)["url"] == f"memory://{name}"


# -- the stream ------------------------------------------------------------------


def test_stream_starts_with_a_snapshot_then_pushes_event_and_tree_deltas(registry: discovery.Registry) -> None:
    registry.define("buzz/api", 1)
    with serving(registry, "buzz") as (base, _dashboard), stream(base) as events:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        first = events.next()
        assert first.type == first.data["type"] == "snapshot"
        assert first.data["instances"] == []
        assert health("buzz/api", "down")(first)
        registration = registry.register("buzz/api", "h1", address="10.0.0.1", port=80, ttl=30)
        added = events.until(lambda m: ("added", "buzz/api", "h1") in events_of([m]))
        event = added[-1].data["events"][0]
        assert event["instance"]["address"] == "10.0.0.1" and event["resync"] is False
        assert added[-1].data["revision"] >= event["revision"]
        tree = events.until(health("buzz/api", "up"))
        registration.close()
        removed = events.until(lambda m: ("removed", "buzz/api", "h1") in events_of([m]))
        down = events.until(health("buzz/api", "down"))
    seqs = [m.seq for m in [first, *added, *tree, *removed, *down]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert {m.id.rpartition("-")[0] for m in [first, *added]} == {first.id.rpartition("-")[0]}


def test_events_outside_the_prefix_are_not_sent(memory_registry: discovery.Registry) -> None:
    with serving(memory_registry, "buzz") as (base, _dashboard), stream(base) as events:
        events.next()
        memory_registry.register("other/api", "o1")
        memory_registry.register("buzz/api", "h1")
        messages = events.until(lambda m: m.type == "events")
    assert events_of(messages) == [("added", "buzz/api", "h1")]


def test_reconnecting_with_last_event_id_resumes_with_the_missed_deltas(registry: discovery.Registry) -> None:
    with serving(registry, "buzz") as (base, _dashboard):
        with stream(base) as events:
            events.next()
            registry.register("buzz/api", "h1", ttl=30)
            last = events.until(lambda m: m.type == "events")[-1]
        registry.register("buzz/api", "h2", ttl=30)
        registry.register("buzz/api", "h3", ttl=30)
        wait_until(lambda: has_instance(base, "buzz/api", "h3"), timeout=TIMEOUT, message="h3 in the feed")
        for query in (False, True):
            with stream(base, last.id, query=query) as resumed:
                missed = resumed.until(lambda m: ("added", "buzz/api", "h3") in events_of([m]))
            assert "snapshot" not in [m.type for m in missed]
            assert events_of(missed) == [("added", "buzz/api", "h2"), ("added", "buzz/api", "h3")]
            assert missed[0].seq == last.seq + 1
            assert all(m.seq > last.seq for m in missed)


def test_an_id_the_ring_no_longer_holds_gets_a_fresh_snapshot(memory_registry: discovery.Registry) -> None:
    with serving(memory_registry, ring_size=2) as (base, _dashboard):
        with stream(base) as events:
            first = events.next()
            for n in range(4):
                memory_registry.register("buzz/api", f"h{n}")
                # This stream may fall behind so small a ring itself, and then gets a snapshot instead.
                events.until(lambda m, n=n: f"h{n}" in ids_in(m))
        for stale in (first.id, f"0000-{first.seq}", "garbage", f"{first.id.rpartition('-')[0]}-999999"):
            with stream(base, stale) as fresh:
                message = fresh.next()
            assert message.type == "snapshot", stale
            assert sorted(i["id"] for i in message.data["instances"]) == ["h0", "h1", "h2", "h3"]
            assert message.seq > first.seq


def test_state_notices_are_pushed_and_logged(memory_registry: discovery.Registry) -> None:
    with serving(memory_registry) as (base, dashboard), stream(base) as events:
        events.next()
        assert dashboard.cache is not None
        dashboard.cache.request_resync("checking")
        started = events.until(lambda m: m.type == "state")[-1]
        assert (started.data["notice"], started.data["state"], started.data["reason"]) == (
            "resync-started",
            "resyncing",
            "checking",
        )
        done = events.until(lambda m: m.type == "state")[-1]
        assert (done.data["notice"], done.data["state"]) == ("resynced", "connected")
        log = snapshot(base)["log"]
    assert [entry["kind"] for entry in log[:2]] == ["resynced", "resync-started"]


def test_a_watch_that_breaks_is_pushed_and_the_page_keeps_its_contents() -> None:
    url = f"memory://dashboard-{uuid.uuid4().hex[:12]}?reconnect_timeout=0.5"
    with registry_on(FlakyBackend, url, break_after=10**9) as registry:
        registry.register("buzz/api", "h1")
        backend = registry.backend
        assert isinstance(backend, FlakyBackend)
        with serving(registry) as (base, _dashboard), stream(base) as events:
            events.next()
            with backend.lock:
                backend.refuse_watch = True
                backend.break_after = backend.batches
            messages = events.until(lambda m: m.type == "state" and m.data["state"] == "broken")
            assert [m.data["notice"] for m in messages if m.type == "state"] == ["disconnected", "broken"]
            assert "server unreachable" in messages[-1].data["reason"]
            body = snapshot(base)
    assert (body["state"], [i["id"] for i in body["instances"]]) == ("broken", ["h1"])
    assert "server unreachable" in body["reason"]


def test_a_bug_that_stops_the_feed_is_shown_as_broken(
    memory_registry: discovery.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(memory_registry) as (base, dashboard), stream(base) as events:
        events.next()

        def status(prefix: str = "") -> discovery.StatusNode:
            raise ZeroDivisionError("a bug")

        monkeypatch.setattr(dashboard.cache, "status", status)
        memory_registry.register("buzz/api", "h1")
        broken = events.until(lambda m: m.type == "state")[-1]
    assert (broken.data["notice"], broken.data["state"]) == ("broken", "broken")
    assert "ZeroDivisionError" in broken.data["reason"]


def test_a_burst_is_coalesced_into_few_messages(memory_registry: discovery.Registry) -> None:
    count = 2000
    with serving(memory_registry, window=0.2) as (base, _dashboard), stream(base) as events:
        events.next()
        started = time.monotonic()
        for n in range(count):
            memory_registry.register(f"svc/s{n % 50}", f"h{n}")
        messages = events.until(lambda m: ("added", "svc/s49", f"h{count - 1}") in events_of([m]), timeout=60)
        tree = events.until(lambda m: m.type == "tree" and m.data["tree"]["total"] == count)
        elapsed = time.monotonic() - started
        messages += tree
    assert len(events_of(messages)) == count
    flushes = 2 + elapsed / 0.2
    assert len([m for m in messages if m.type == "events"]) <= count / 500 + flushes
    assert len([m for m in messages if m.type == "tree"]) <= flushes, f"{elapsed:.1f} s"


def test_shutdown_ends_open_streams(memory_registry: discovery.Registry) -> None:
    app = create_app(memory_registry, keepalive=60)
    with running(app, "127.0.0.1", free_ports(1)[0]) as base:
        connection = Stream(base)
        connection.next()
        started = time.monotonic()
    assert time.monotonic() - started < 5, "the server waited for the open stream"
    assert connection.ended.wait(TIMEOUT)
    connection.close()


# -- the page, its files, metrics -------------------------------------------------------


def test_the_page_and_its_files_are_served_with_no_outside_reference(memory_registry: discovery.Registry) -> None:
    with serving(memory_registry) as (base, _dashboard):
        page = httpx.get(base)
        script = httpx.get(f"{base}static/dashboard.js")
        style = httpx.get(f"{base}static/dashboard.css")
    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    for selector in ('id="watch-state" data-state=', 'id="revision" data-revision=', 'id="tree"', 'id="log"'):
        assert selector in page.text
    # The selectors the module docstring documents for browser tests are set by the script.
    for name in ("service", "health", "kind", "instanceId", "revision", "state", "for", "ready", "stream"):
        assert re.search(rf"\b(dataset|data)\.{name} =", script.text), name
    for text in (page.text, script.text, style.text):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), "a reference outside the package"


def test_metrics_are_served_for_the_dashboards_cache(memory_registry: discovery.Registry) -> None:
    memory_registry.register("buzz/api", "h1")
    with serving(memory_registry, "buzz") as (base, _dashboard):
        response = httpx.get(f"{base}metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "discovery_" in response.text


def test_without_the_metrics_module_the_page_works_and_metrics_answer_503(
    memory_registry: discovery.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "discovery.metrics", None)
    with serving(memory_registry) as (base, _dashboard):
        response = httpx.get(f"{base}metrics")
        assert snapshot(base)["state"] == "connected"
    assert response.status_code == 503
    assert "metrics unavailable" in response.text


def test_loopback_rule() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com"):
        assert not is_loopback(host), host


def test_a_prefix_outside_the_given_cache_is_refused(memory_registry: discovery.Registry) -> None:
    with memory_registry.cache("buzz") as cache, pytest.raises(discovery.InvalidValue):
        create_app(memory_registry, "other", cache=cache)
    with pytest.raises(discovery.InvalidName):
        create_app(memory_registry, "a//b")


# -- the command ---------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


READY = re.compile(r"^dashboard on (http://\S+/) \(prefix (\S+)\)$")


def test_a_non_loopback_host_needs_allow_remote(cli: Cli) -> None:
    result = cli.run("--url", "memory://", "dashboard", "--host", "0.0.0.0")
    assert result.code == 2, result
    (line,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert "--allow-remote" in line and "0.0.0.0" in line
    assert "Traceback" not in result.err


def test_allow_remote_serves_with_a_warning(cli: Cli) -> None:
    server = cli.spawn("--url", "memory://", "dashboard", "--host", "0.0.0.0", "--allow-remote", "--port", "0")
    match = READY.match(server.wait_for(lambda line: line.startswith("dashboard on "), what="the ready line"))
    assert match is not None and match.group(2) == "/"
    port = match.group(1).rsplit(":", 1)[1].rstrip("/")
    assert "warning: serving on 0.0.0.0" in server.err
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).status_code == 200
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_dashboard_command_serves_a_registry_until_stopped(
    cli: Cli, etcd_cluster: EtcdCluster, signum: signal.Signals
) -> None:
    url = etcd_cluster.url("etcd", f"/dashboard-{uuid.uuid4().hex[:10]}")
    server = cli.spawn("--url", url, "dashboard", "--prefix", "buzz", "--port", "0")
    match = READY.match(server.wait_for(lambda line: line.startswith("dashboard on "), what="the ready line"))
    assert match is not None and match.group(2) == "buzz"
    base = match.group(1)
    assert base.startswith("http://127.0.0.1:")
    with discovery.connect(url) as registry, stream(base) as events:
        assert events.next().type == "snapshot"
        registry.register("buzz/api", "h1", address="10.0.0.1", port=80, ttl=30)
        events.until(lambda m: ("added", "buzz/api", "h1") in events_of([m]))
        assert snapshot(base)["backend"] == "etcd"
        # Stopped with a browser's stream open: the stream is ended, not waited for.
        started = time.monotonic()
        assert server.stop(signum, timeout=20) == 0
        assert time.monotonic() - started < 10
        assert events.ended.wait(TIMEOUT)
    assert "Traceback" not in server.err


def test_dashboard_bad_prefix_and_help(cli: Cli) -> None:
    result = cli.run("--url", "memory://", "dashboard", "--prefix", "a//b")
    assert result.code == 2 and "invalid prefix 'a//b'" in result.err, result
    for command in ("dashboard", "sd"):
        help_text = cli.run(command, "--help")
        assert help_text.code == 0
        assert f"discovery {command}" in help_text.out.split("Example", 1)[1]
