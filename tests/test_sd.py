"""Prometheus service discovery: the target-group format, the dashboard's ``/sd/prometheus``, ``discovery sd --file``.

The format is checked on instances built here (labels, their sanitisation,
the split into one group per distinct label set, IPv6 brackets, what is
skipped); the endpoint and the file on real registries: memory in this
process, etcd and ZooKeeper through the session's servers. Every wait is a
deadline loop; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import discovery
from discovery.dashboard import create_app, running
from discovery.models import Instance
from discovery.sd import TargetFile, Written, label_name, target_groups, targets, write_atomically
from discovery.servers import EtcdCluster, ZooKeeperCluster, free_ports
from discovery.testing.memory import registry_on
from discovery.testing.waiting import wait_until
from tests.cli.conftest import Cli
from tests.helpers import FlakyBackend

SERVICE = "__meta_discovery_service"
ZONE = "__meta_discovery_zone"


def instance(service: str, id: str, address: str | None = "10.0.0.1", port: int | None = 80, **meta: Any) -> Instance:
    return Instance(service, id, address, port, meta)


# -- the format ----------------------------------------------------------------


def test_one_group_per_service_with_address_port_targets_sorted() -> None:
    groups = target_groups(
        [
            instance("buzz/api", "b", "10.0.0.2", 8080),
            instance("buzz/api", "a", "10.0.0.1", 8080),
            instance("buzz/web", "w", "web-1.example", 80),
        ]
    )
    assert groups == [
        {"targets": ["10.0.0.1:8080", "10.0.0.2:8080"], "labels": {SERVICE: "buzz/api"}},
        {"targets": ["web-1.example:80"], "labels": {SERVICE: "buzz/web"}},
    ]


def test_instances_whose_zone_or_meta_differ_are_split_into_groups() -> None:
    groups = target_groups(
        [
            instance("buzz/api", "a", "10.0.0.1", zone="eu-1", version="1.2"),
            instance("buzz/api", "b", "10.0.0.2", zone="eu-1", version="1.2"),
            instance("buzz/api", "c", "10.0.0.3", zone="us-1", version="1.2"),
            instance("buzz/api", "d", "10.0.0.4", zone="eu-1", version="1.3"),
        ]
    )
    assert [(g["targets"], g["labels"][ZONE], g["labels"][label_name("version")]) for g in groups] == [
        (["10.0.0.1:80", "10.0.0.2:80"], "eu-1", "1.2"),
        (["10.0.0.3:80"], "us-1", "1.2"),
        (["10.0.0.4:80"], "eu-1", "1.3"),
    ]
    assert all(g["labels"][SERVICE] == "buzz/api" for g in groups)


def test_labels_are_sanitised_and_only_scalar_meta_becomes_labels() -> None:
    (group,) = target_groups(
        [
            instance(
                "buzz/api",
                "a",
                **{
                    "app.kubernetes.io/name": "api",
                    "weight": 2.5,
                    "replicas": 3,
                    "canary": True,
                    "tags": ["a", "b"],
                    "owner": {"team": "x"},
                    "nothing": None,
                    "zone": "eu-1",
                },
            )
        ]
    )
    assert group["labels"] == {
        SERVICE: "buzz/api",
        ZONE: "eu-1",
        "__meta_discovery_meta_app_kubernetes_io_name": "api",
        "__meta_discovery_meta_weight": "2.5",
        "__meta_discovery_meta_replicas": "3",
        "__meta_discovery_meta_canary": "true",
        "__meta_discovery_meta_zone": "eu-1",
    }
    for name in group["labels"]:
        assert all(c.isascii() and (c.isalnum() or c == "_") for c in name), name


def test_two_keys_that_sanitise_alike_give_the_first_sorted_key_every_time() -> None:
    labels = target_groups([instance("s", "a", **{"a-b": "dash", "a.b": "dot"})])[0]["labels"]
    assert labels[label_name("a-b")] == "dash"
    assert label_name("a-b") == label_name("a.b") == "__meta_discovery_meta_a_b"
    assert label_name("ü") == "__meta_discovery_meta__"


def test_ipv6_in_brackets_and_instances_without_address_or_port_skipped() -> None:
    groups = target_groups(
        [
            instance("s", "v6", "2001:db8::1", 9100),
            instance("s", "bracketed", "[::1]", 9100),
            instance("s", "no-port", "10.0.0.1", None),
            instance("s", "no-address", None, 9100),
            instance("t", "raw", None, None, raw="not json"),
        ]
    )
    assert groups == [{"targets": ["[2001:db8::1]:9100", "[::1]:9100"], "labels": {SERVICE: "s"}}]


def test_the_same_instances_always_give_the_same_json() -> None:
    members = [instance("s", str(n), f"10.0.0.{n}", zone=f"z{n % 3}") for n in range(20)]
    assert json.dumps(target_groups(members)) == json.dumps(target_groups(reversed(members)))


# -- the atomic file -------------------------------------------------------------


def test_write_atomically_renames_a_synced_temporary_file_of_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "targets.json"
    path.write_text("old")
    path.chmod(0o640)
    renames: list[tuple[str, str]] = []
    synced: list[int] = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(source: str, target: str | Path) -> None:
        renames.append((str(source), str(target)))
        assert path.read_text() == "old", "the file changed before the rename"
        real_replace(source, target)

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    write_atomically(path, b"[]\n")
    assert path.read_text() == "[]\n"
    ((source, target),) = renames
    assert Path(source).parent == tmp_path and Path(source).name.startswith(".targets.json.")
    assert target == str(path)
    assert len(synced) == 2, "the file and its directory are synced"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "an existing file keeps its mode"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "targets.json"
    path.write_text("old")

    def replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, b"new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.json"]


def test_a_new_file_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    write_atomically(path, b"[]")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# -- a target file kept current from a cache (memory) ------------------------------


@pytest.fixture
def memory_registry() -> Iterator[discovery.Registry]:
    with discovery.connect(f"memory://sd-{uuid.uuid4().hex[:12]}") as registry:
        yield registry


def read_groups(path: Path) -> list[dict[str, Any]]:
    try:
        loaded: list[dict[str, Any]] = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return loaded


def all_targets(path: Path) -> list[str]:
    return sorted(target for group in read_groups(path) for target in group["targets"])


def test_target_file_follows_the_cache_and_coalesces_bursts(
    memory_registry: discovery.Registry, tmp_path: Path
) -> None:
    path = tmp_path / "targets.json"
    writes: list[Written] = []
    stop = threading.Event()
    with memory_registry.cache("buzz") as cache:
        target_file = TargetFile(cache, path, "buzz", interval=0.2)
        runner = threading.Thread(target=target_file.run, args=(stop, writes.append))
        runner.start()
        try:
            wait_until(lambda: path.exists(), timeout=10, message="the first write")
            assert read_groups(path) == []
            memory_registry.register("buzz/api", "h1", address="10.0.0.1", port=80, meta={"zone": "eu-1"})
            memory_registry.register("other/api", "x", address="10.9.9.9", port=80)
            wait_until(lambda: all_targets(path) == ["10.0.0.1:80"], timeout=10, message="the new instance")
            before = len(writes)
            for n in range(300):
                memory_registry.register("buzz/web", f"w{n}", address=f"10.1.{n // 200}.{n % 200}", port=8080)
            wait_until(lambda: len(all_targets(path)) == 301, timeout=10, message="the burst")
            assert len(writes) - before < 30, f"{len(writes) - before} writes for a burst of 300 registrations"
            assert writes[-1].target_count == 301 and writes[-1].revision >= 300
        finally:
            stop.set()
            runner.join(10)
    assert not runner.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.json"]


def test_target_file_run_raises_when_the_watch_breaks(tmp_path: Path) -> None:
    url = f"memory://sd-{uuid.uuid4().hex[:12]}?reconnect_timeout=0.5"
    with registry_on(FlakyBackend, url, break_after=10**9) as registry, registry.cache() as cache:
        registry.register("buzz/api", "h1", address="10.0.0.1", port=80)
        cache.wait_for(lambda c: bool(c.instances("buzz/api")), timeout=10)
        backend = registry.backend
        assert isinstance(backend, FlakyBackend)
        with backend.lock:
            backend.refuse_watch = True
            backend.break_after = backend.batches
        with pytest.raises(discovery.WatchBroken, match="server unreachable"):
            TargetFile(cache, tmp_path / "t.json").run()
    assert all_targets(tmp_path / "t.json") == ["10.0.0.1:80"], "the file keeps the last targets"


def test_targets_of_a_prefix_outside_the_cache_are_refused(memory_registry: discovery.Registry) -> None:
    with memory_registry.cache("buzz") as cache:
        with pytest.raises(discovery.InvalidValue) as outside:
            targets(cache, "other")
        assert outside.value.field == "prefix"
        with pytest.raises(discovery.InvalidName) as bad:
            targets(cache, "a//b")
        assert bad.value.field == "prefix"


# -- the dashboard's /sd/prometheus, on every backend ---------------------------------


@pytest.fixture(params=["memory", "etcd", "zookeeper"])
def registry(request: pytest.FixtureRequest) -> Iterator[discovery.Registry]:
    root = f"/sd-{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        url = f"memory://sd-{uuid.uuid4().hex[:12]}"
    else:
        cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(f"{request.param}_cluster")
        url = cluster.url(request.param, root)
    with discovery.connect(url) as registry:
        yield registry


def test_http_sd_serves_prometheus_target_groups(registry: discovery.Registry) -> None:
    registry.register("buzz/api", "h1", address="10.0.0.1", port=8080, meta={"zone": "eu-1", "build.id": 7}, ttl=30)
    registry.register("buzz/api", "h2", address="::1", port=8080, meta={"zone": "eu-1", "build.id": 7}, ttl=30)
    registry.register("buzz/api", "h3", address="10.0.0.3", port=8080, meta={"zone": "us-1", "build.id": 7}, ttl=30)
    registry.register("buzz/worker", "w1", address="10.0.0.9", ttl=30)
    registry.register("other/api", "o1", address="10.0.0.8", port=1, ttl=30)
    with running(create_app(registry, "buzz"), "127.0.0.1", free_ports(1)[0]) as url:
        response = httpx.get(f"{url}sd/prometheus", params={"prefix": "buzz"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        labels = {"__meta_discovery_service": "buzz/api", "__meta_discovery_meta_build_id": "7"}
        assert response.json() == [
            {
                "targets": ["10.0.0.1:8080", "[::1]:8080"],
                "labels": {**labels, ZONE: "eu-1", "__meta_discovery_meta_zone": "eu-1"},
            },
            {"targets": ["10.0.0.3:8080"], "labels": {**labels, ZONE: "us-1", "__meta_discovery_meta_zone": "us-1"}},
        ]
        # No prefix: the dashboard's; a narrower one: only its services.
        assert httpx.get(f"{url}sd/prometheus").json() == response.json()
        assert httpx.get(f"{url}sd/prometheus", params={"prefix": "buzz/worker"}).json() == []
        registry.register("buzz/worker", "w2", address="10.0.0.10", port=9000, ttl=30)
        wait_until(
            lambda: httpx.get(f"{url}sd/prometheus", params={"prefix": "buzz/worker"}).json(),
            timeout=15,
            message="the new instance in the targets",
        )


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [("a//b", "empty segment"), ("buzz/_x", "reserved"), ("other", "outside the dashboard's prefix 'buzz'")],
)
def test_http_sd_bad_prefix_is_a_400_naming_the_field(
    memory_registry: discovery.Registry, prefix: str, reason: str
) -> None:
    with running(create_app(memory_registry, "buzz"), "127.0.0.1", free_ports(1)[0]) as url:
        response = httpx.get(f"{url}sd/prometheus", params={"prefix": prefix})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["field"] == "prefix" and reason in body["error"], body


# -- discovery sd --file, on etcd and ZooKeeper ---------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


@pytest.mark.parametrize("scheme", ["etcd", "zookeeper"])
def test_sd_file_is_rewritten_atomically_on_every_change(
    cli: Cli, tmp_path: Path, request: pytest.FixtureRequest, scheme: str
) -> None:
    cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(f"{scheme}_cluster")
    url = cluster.url(scheme, f"/sd-{uuid.uuid4().hex[:10]}")
    path = tmp_path / "prometheus" / "targets.json"
    path.parent.mkdir()
    with discovery.connect(url) as registry:
        registry.register("buzz/api", "h1", address="10.0.0.1", port=8080, ttl=30)
        writer = cli.spawn("--url", url, "sd", "--file", str(path), "--prefix", "buzz")
        first = writer.wait_for(lambda line: line.startswith("wrote "), what="the first write")
        assert first.startswith(f"wrote 1 target in 1 group to {path} (rev ")
        assert all_targets(path) == ["10.0.0.1:8080"]
        inode = path.stat().st_ino
        registry.register("buzz/web", "w1", address="10.0.0.2", port=80, meta={"zone": "eu-1"}, ttl=30)
        wait_until(lambda: all_targets(path) == ["10.0.0.1:8080", "10.0.0.2:80"], timeout=15, message="w1 in the file")
        assert path.stat().st_ino != inode, "rewritten by a rename, not in place"
        web = next(group for group in read_groups(path) if group["labels"][SERVICE] == "buzz/web")
        assert web["labels"][ZONE] == "eu-1"
        registry.deregister("buzz/api", "h1")
        wait_until(lambda: all_targets(path) == ["10.0.0.2:80"], timeout=15, message="h1 gone from the file")
        assert writer.stop(signal.SIGINT) == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["targets.json"], "no temporary file left"
    assert "Traceback" not in writer.err


def test_sd_without_its_directory_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("--url", "memory://", "sd", "--file", str(tmp_path / "missing" / "targets.json"))
    assert result.code == 1, result
    assert [line for line in result.err.splitlines() if line.startswith("error: ")], result.err
    assert "Traceback" not in result.err


def test_sd_bad_prefix_exits_2(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("--url", "memory://", "sd", "--file", str(tmp_path / "t.json"), "--prefix", "a//b")
    assert result.code == 2, result
    assert "invalid prefix 'a//b'" in result.err
