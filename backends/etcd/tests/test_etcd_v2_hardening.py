"""Regression tests of the etcd v2 backend for issue 11, against a real etcd 3.4: watch outages, names, limits.

These tests failed on commit 20b75b1 (but the first, the positive side of
``confirmed``, which every stream then claimed): a watch on a stopped server spun
through stream threads without ever raising WatchBroken (a v2 stream opens
without contacting the server, so it must say when it is ``confirmed``); an
empty directory left by v2 blocked a name for good, and a name under a key
was a plain BackendError; an instance id of the form ``~_...`` read back as a
reserved name; a key whose percent-encoded URL passed 4 KB was reset by the
server, unannounced by ``key_size``; and a session could not delete its large
value on close, since the delete sent the value in the URL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import etcd
import pytest
import requests

import discovery
from discovery.backend import Batch, Gap, Session
from discovery.errors import BackendError, NameConflict, WatchBroken
from discovery.servers import EtcdCluster, free_ports
from discovery.testing.waiting import wait_until
from discovery_etcd import Etcd2Backend
from discovery_etcd._v2 import V2WatchStream

Collect = Callable[..., tuple[list[Batch], Gap | None]]


def owned(session: Session, extra: str = "") -> bytes:
    return f'{{"registrant":"{session.id}"{extra}}}'.encode()


def raw_client(cluster: EtcdCluster) -> etcd.Client:
    host, _, port = cluster.client_urls[0].removeprefix("http://").rpartition(":")
    return etcd.Client(host=host, port=int(port), read_timeout=5)


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("etcd2-watch-")]


# -- 1. the watch on a dead server ---------------------------------------------


def test_stream_is_confirmed_by_the_servers_headers_alone(v2: Etcd2Backend) -> None:
    position = v2.put("svc/a/h0", b"0", None)
    stream = v2.watch("svc/", position)
    assert isinstance(stream, V2WatchStream)
    # No event comes: the long poll's headers, which etcd flushes when it
    # registers the wait, are what confirms the stream.
    wait_until(lambda: stream.confirmed, timeout=10, message="stream not confirmed without events")
    assert stream.next(0.2) is None
    stream.close()
    wait_until(lambda: not stream_threads(), timeout=10, message="the stream's thread outlived close()")


def test_stream_on_a_dead_server_fails_fast_unconfirmed(make_backend: Callable[..., Any]) -> None:
    (port,) = free_ports(1)
    backend = make_backend(Etcd2Backend, None, hosts=(("127.0.0.1", port),), timeout=1.0)
    stream = backend.watch("svc/", 5)
    started = time.monotonic()
    with pytest.raises(BackendError):
        wait_until(lambda: stream.next(0.5) is not None, timeout=10, message="dead stream neither failed nor served")
    assert time.monotonic() - started < 5
    assert not stream.confirmed
    # The reader has ended with the failure, before anyone closed the stream.
    wait_until(lambda: not stream_threads(), timeout=5, message="a failed stream's thread lives on")
    stream.close()


@pytest.mark.parametrize("outage", ["killed", "paused"])
def test_watch_on_a_stopped_server_is_broken_within_reconnect_timeout(
    etcd_own: EtcdCluster, root: str, outage: str
) -> None:
    """A killed server refuses connections; a paused one accepts them and never answers.

    A paused one is what an unconfirmed stream is for: each resumed stream
    waits for headers that never come, and must not count as a recovery.
    """
    reconnect_timeout = 5.0
    (member,) = etcd_own.members
    with discovery.connect(etcd_own.url("etcd2", root), reconnect_timeout=reconnect_timeout, timeout=1.0) as registry:
        watch = registry.watch("svc")
        lease = registry.register("svc/a", "h1", address="10.0.0.1", port=1, ttl=30)
        try:
            wait_until(lambda: watch.get(1) is not None, timeout=20, message="no initial event")
            baseline = threading.active_count()
            member.kill() if outage == "killed" else member.pause()
            stopped = time.monotonic()
            highest = baseline
            most_streams = 0
            broken: WatchBroken | None = None
            # reconnect_timeout, one retry at the longest backoff, the
            # connection timeout of the last attempt, and slack for a busy host.
            while time.monotonic() - stopped < reconnect_timeout + 2.0 + 1.0 + 10.0:
                highest = max(highest, threading.active_count())
                most_streams = max(most_streams, len(stream_threads()))
                try:
                    watch.get(0.1)
                except WatchBroken as exc:
                    broken = exc
                    break
            assert broken is not None, f"no WatchBroken {time.monotonic() - stopped:.1f} s after the server stopped"
            assert time.monotonic() - stopped >= reconnect_timeout * 0.8
            # At most a couple of stream threads at once, not thousands in turn.
            assert most_streams <= 3, most_streams
            assert highest <= baseline + 6, (baseline, highest)
        finally:
            watch.close()
            member.restart() if outage == "killed" else member.resume()
            etcd_own.wait_healthy()
            lease.close()
    wait_until(lambda: not stream_threads(), timeout=10, message="stream threads outlived the watch")


# -- 2. name collisions ------------------------------------------------------------


def test_an_empty_directory_left_behind_does_not_block_the_name(
    v2: Etcd2Backend, etcd_cluster: EtcdCluster, root: str
) -> None:
    session = v2.open_session(5)
    v2.put("shop/api/x", owned(session), session)
    v2.put("shop/web/x/y", b"deep", None)
    assert v2.delete("shop/api/x", session) is True
    assert v2.delete("shop/web/x/y") is True
    # v2 keeps shop/api and shop/web/x as empty directories.
    assert raw_client(etcd_cluster).read(f"{root}/shop/api").dir
    v2.put("shop/api", owned(session), session)
    v2.put("shop/web", b"persistent", None)
    assert {record.key: record.value for record in v2.list("shop/").records} == {
        "shop/api": owned(session),
        "shop/web": b"persistent",
    }
    session.close()
    assert [record.key for record in v2.list("shop/").records] == ["shop/web"]


def test_a_key_below_or_above_is_a_name_conflict(v2: Etcd2Backend) -> None:
    session = v2.open_session(5)
    v2.put("shop/api/x", owned(session), session)
    v2.put("shop/db", owned(session), session)
    for persistent in (True, False):
        owner = None if persistent else session
        with pytest.raises(NameConflict) as below:
            v2.put("shop/api", owned(session), owner)
        assert (below.value.key, below.value.conflict) == ("shop/api", "shop/api/x")
        with pytest.raises(NameConflict) as above:
            v2.put("shop/db/y", owned(session), owner)
        assert (above.value.key, above.value.conflict) == ("shop/db/y", "shop/db")
        with pytest.raises(NameConflict) as definition:
            v2.put("shop/db/_definition", b'{"min_instances":1}', owner)
        assert (definition.value.key, definition.value.conflict) == ("shop/db/_definition", "shop/db")
    v2.put("shop/web/_definition", b'{"min_instances":1}', None)
    with pytest.raises(NameConflict) as defined:
        v2.put("shop/web", owned(session), session)
    assert (defined.value.key, defined.value.conflict) == ("shop/web", "shop/web/_definition")
    # Nothing was changed by the refused writes.
    assert {record.key for record in v2.list("shop/").records} == {"shop/api/x", "shop/db", "shop/web/_definition"}
    session.close()


def test_reads_below_a_key_find_nothing(v2: Etcd2Backend) -> None:
    written = v2.put("shop/db", b"x", None)
    listing = v2.list("shop/db/")
    assert listing.records == () and listing.revision >= written
    assert v2.delete("shop/db/y") is False
    stream = v2.watch("shop/db/", None)
    wait_until(lambda: stream.confirmed, timeout=10, message="watch below a key not confirmed")
    assert stream.next(0.2) is None
    stream.close()


def test_name_conflicts_through_the_registry(etcd_cluster: EtcdCluster, root: str) -> None:
    with discovery.connect(etcd_cluster.url("etcd2", root)) as registry:
        registry.register("shop/api", "x", ttl=5).close()
        registry.register("shop", "api", ttl=5).close()  # the leftover directory is no obstacle
        registry.register("shop/api", "x", ttl=5).close()  # nor the leftover key's place
        held = registry.register("shop", "api", ttl=5)
        with pytest.raises(NameConflict):
            registry.register("shop/api", "x", ttl=5)
        held.close()
        registry.define("shop/api", min_instances=1)
        with pytest.raises(NameConflict):
            registry.register("shop", "api", ttl=5)
        assert registry.definitions("shop") == {"shop/api": 1}


# -- 3. the escape of reserved names -------------------------------------------------


def test_ids_that_look_escaped_round_trip(etcd_cluster: EtcdCluster, root: str) -> None:
    ids = ["~_definition", "~x", "~~y", "~~_z", "plain"]
    with discovery.connect(etcd_cluster.url("etcd2", root)) as registry:
        registry.define("shop/api", min_instances=2)
        with registry.watch("shop") as watch:
            leases = [registry.register("shop/api", name, address="10.0.0.1", port=1, ttl=5) for name in ids]
            seen: set[str] = set()
            wait_until(
                lambda: seen.update(e.instance_id for e in iter(lambda: watch.get(0.2), None)) or seen >= set(ids),
                timeout=20,
                message="not every id was watched",
            )
            assert seen == set(ids)
            assert sorted(instance.id for instance in registry.instances("shop/api")) == sorted(ids)
            assert registry.definitions("shop") == {"shop/api": 2}
            for lease in leases:
                lease.close()
        assert registry.instances("shop/api") == []
        assert registry.definitions("shop") == {"shop/api": 2}
    stored = {node.key for node in raw_client(etcd_cluster).read(f"{root}/shop/api", recursive=True).leaves}
    assert stored == {f"{root}/shop/api/~_definition"}


def test_the_escape_is_unambiguous_and_keeps_plain_names(v2: Etcd2Backend, root: str) -> None:
    keys = v2.keys
    assert keys.full("a/_definition") == f"{root}/a/~_definition"
    assert keys.full("a/~_definition") == f"{root}/a/~~_definition"
    assert keys.full("a/~x") == f"{root}/a/~x"
    assert keys.full("~~y/b") == f"{root}/~~y/b"
    for key in ("a/_definition", "a/~_definition", "a/~~_definition", "a/~x", "~~y/~b", "a/_x/~_y"):
        assert keys.relative(keys.full(key)) == key


# -- 4. limits --------------------------------------------------------------------


def fresh_connections(backend: Etcd2Backend) -> Etcd2Backend:
    """Drop the backend's idle connections: etcd's limit binds the first request of a connection."""
    for client in backend.clients:
        client.http.clear()
    return backend


def test_key_size_is_the_url_path_and_the_limit_holds_for_every_request(
    v2: Etcd2Backend, read_stream: Collect, root: str
) -> None:
    # "é" is two UTF-8 bytes, six once percent-encoded; "_" adds the escape.
    assert v2.key_size("s/_é") == len(f"/v2/keys{root}/s/~_%C3%A9")
    service = "s/a"
    filler = "é" * ((v2.max_key_bytes - v2.key_size(f"{service}/")) // 6)
    key = f"{service}/{filler}"
    key += "x" * (v2.max_key_bytes - v2.key_size(key))
    assert v2.key_size(key) == v2.max_key_bytes
    session = v2.open_session(1)
    # Each stream has a connection of its own; the longest query: a 19-digit index.
    stream = v2.watch(f"{key}/", 2**63)
    wait_until(lambda: stream.confirmed, timeout=10, message="watch on the longest directory not confirmed")
    stream.close()
    stream = v2.watch(f"{service}/", None)
    written = fresh_connections(v2).put(key, owned(session), session)
    batches, _ = read_stream(stream, lambda got: len(got) >= 1)
    assert batches[0].changes[0].key == key
    assert [record.key for record in fresh_connections(v2).list(f"{key}/").records] == []
    wait_until(lambda: v2.list("").revision > written + 1, timeout=10, message="no refresh of the long key")
    assert fresh_connections(v2).delete(key, session) is True
    stream.close()
    session.close()
    # The limit is real and its margin small: a path a query's room longer
    # is reset by etcd (its port multiplexer reads the first request line of
    # a connection into 4 KB, and closes a connection it cannot match).
    with pytest.raises(BackendError):
        fresh_connections(v2).list(key + "y" * 100 + "/")


def test_a_value_of_max_value_bytes_is_written_swapped_refreshed_and_deleted(
    v2: Etcd2Backend, read_stream: Collect
) -> None:
    session = v2.open_session(2)

    def largest(fill: str) -> bytes:
        # Non-ASCII text: every byte is percent-encoded, three times its size in the request.
        head = owned(session, ',"pad":"')
        return head + (fill * ((v2.max_value_bytes - len(head) - 2) // 2)).encode() + b'"}'

    value = largest("é")
    assert v2.max_value_bytes - 2 <= len(value) <= v2.max_value_bytes
    stream = v2.watch("big/", None)
    v2.put("big/a/h1", value, session)
    replaced = largest("è")
    v2.put("big/a/h1", replaced, session)
    batches, _ = read_stream(stream, lambda got: len(got) >= 2, timeout=60)
    assert [batch.changes[0].value for batch in batches[:2]] == [value, replaced]
    written = batches[1].revision
    wait_until(lambda: v2.list("").revision > written, timeout=15, message="no refresh of the large value")
    assert session.alive
    session.close()
    assert v2.list("big/").records == ()
    stream.close()


def test_max_value_bytes_has_room_below_the_servers_form_limit(etcd_cluster: EtcdCluster) -> None:
    # etcd parses a form body up to 10 MiB; the worst case of a value is three bytes per byte.
    url = f"{etcd_cluster.client_urls[0]}/v2/keys/limit-probe"
    fits = requests.put(url, data={"value": "é" * (Etcd2Backend.max_value_bytes // 2), "ttl": "1"}, timeout=30)
    assert fits.status_code in (200, 201), fits.text[:200]
    over = requests.put(url, data={"value": "a" * (10 << 20), "ttl": "1"}, timeout=30)
    assert over.status_code == 400 and "too large" in over.text
