"""Tests of the servers package's surface: exports, binary lookup, provider choice, Docker, waiting, compose files.

They run in milliseconds and need no server; the docker provider itself runs
for real in the docker leg (``make test-docker``, ``tests/docker/``).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import pytest
import yaml

import discovery.testing.waiting
from discovery.errors import DiscoveryError, InvalidValue
from discovery.servers import (
    DockerEtcdCluster,
    DockerZooKeeperCluster,
    EtcdCluster,
    MissingServerBinary,
    ServerError,
    ServerStartError,
    ZooKeeperCluster,
    docker_available,
    make_etcd_cluster,
    make_zookeeper_cluster,
    provider,
)
from discovery.testing.waiting import wait_until

COMPOSE = Path(__file__).resolve().parents[2] / "compose"


@pytest.mark.parametrize("name", ["discovery.servers", "discovery.testing.server_fixtures"])
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names)
    assert all(hasattr(module, name) for name in names)


def test_error_tree() -> None:
    assert issubclass(ServerError, DiscoveryError)
    assert issubclass(MissingServerBinary, ServerError)
    assert issubclass(ServerStartError, ServerError)


def test_missing_etcd_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingServerBinary) as caught:
        EtcdCluster(binary="/nonexistent/etcd")
    assert caught.value.name == "etcd"
    assert caught.value.packages == ("etcd-server",)
    assert "apt-get install etcd-server" in str(caught.value)
    assert "DISCOVERY_ETCD_BIN" in str(caught.value)
    monkeypatch.setenv("DISCOVERY_ETCD_BIN", "no-such-etcd-command")
    with pytest.raises(MissingServerBinary, match="no-such-etcd-command"):
        EtcdCluster()


def test_missing_java_or_zookeeper_names_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingServerBinary) as caught:
        ZooKeeperCluster(java="/nonexistent/java")
    assert caught.value.name == "java"
    assert caught.value.packages == ("zookeeper", "openjdk-17-jre-headless")
    assert "apt-get install zookeeper openjdk-17-jre-headless" in str(caught.value)
    with pytest.raises(MissingServerBinary) as caught:
        ZooKeeperCluster(classpath="/nonexistent/zookeeper.jar")
    assert caught.value.name == "zookeeper"
    assert caught.value.env_var == "DISCOVERY_ZOOKEEPER_CLASSPATH"
    monkeypatch.setenv("DISCOVERY_JAVA", "/nonexistent/bin/java")
    with pytest.raises(MissingServerBinary, match="DISCOVERY_JAVA"):
        ZooKeeperCluster()


def test_binaries_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    etcd = tmp_path / "my-etcd"
    etcd.write_text("#!/bin/sh\n")
    etcd.chmod(0o755)
    monkeypatch.setenv("DISCOVERY_ETCD_BIN", str(etcd))
    assert EtcdCluster().binary == str(etcd)
    monkeypatch.setenv("DISCOVERY_ZOOKEEPER_CLASSPATH", f"{tmp_path}/*")
    assert ZooKeeperCluster().classpath == f"{tmp_path}/*"


def test_a_cluster_needs_members() -> None:
    with pytest.raises(InvalidValue):
        EtcdCluster(0)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "native"), ("", "native"), ("native", "native"), (" Docker ", "docker")]
)
def test_provider_reads_the_environment(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv("DISCOVERY_SERVERS", raising=False)
    else:
        monkeypatch.setenv("DISCOVERY_SERVERS", value)
    assert provider() == expected


def test_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCOVERY_SERVERS", "podman")
    with pytest.raises(ServerError, match="expected one of native, docker"):
        provider()
    with pytest.raises(ServerError):
        make_etcd_cluster()


def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\n{script}\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_docker_without_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path, monkeypatch, "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    monkeypatch.setenv("DISCOVERY_SERVERS", "docker")
    assert docker_available() is False
    with pytest.raises(ServerError, match="no Docker engine is running"):
        make_etcd_cluster().start()
    with pytest.raises(ServerError, match="no Docker engine is running"), make_zookeeper_cluster(3):
        pass


def test_docker_without_cli_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert docker_available() is False


def test_docker_without_compose_plugin_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path, monkeypatch, 'if [ "$1" = info ]; then exit 0; fi; exit 1')
    monkeypatch.setenv("DISCOVERY_SERVERS", "docker")
    assert docker_available() is True
    with pytest.raises(ServerError, match="docker compose"):
        make_zookeeper_cluster().start()


def test_docker_clusters_name_the_compose_services() -> None:
    assert DockerEtcdCluster(3).services == ["etcd0", "etcd1", "etcd2"]
    assert DockerEtcdCluster(1).file == COMPOSE / "etcd.yml"
    assert DockerZooKeeperCluster(3).file == COMPOSE / "zookeeper-cluster.yml"
    with pytest.raises(ServerError):
        DockerZooKeeperCluster(2)
    with pytest.raises(ServerError, match="not started"):
        DockerEtcdCluster().url()


@pytest.mark.parametrize(
    ("name", "services"),
    [
        ("etcd.yml", ["etcd"]),
        ("etcd-cluster.yml", ["etcd0", "etcd1", "etcd2"]),
        ("zookeeper.yml", ["zookeeper"]),
        ("zookeeper-cluster.yml", ["zookeeper0", "zookeeper1", "zookeeper2"]),
    ],
)
def test_compose_files(name: str, services: list[str]) -> None:
    # Loopback only: host networking, every address 127.0.0.1, ports from the provider's variables.
    document = yaml.safe_load((COMPOSE / name).read_text())
    assert sorted(document["services"]) == services
    kind = name.split("-")[0].removesuffix(".yml")
    for service_name, service in document["services"].items():
        assert service["network_mode"] == "host" and "ports" not in service
        assert service["build"]["context"] == kind and service["build"]["network"] == "host"
        assert service["image"] == f"discovery-{kind}:local"
        text = yaml.safe_dump(service)
        assert f"${{DISCOVERY_{service_name.upper()}_CLIENT_PORT:-" in text
        assert "0.0.0.0" not in text and "localhost" not in text
        if kind == "etcd":
            flags = [*service.get("entrypoint", []), *service["command"]]
            assert "--enable-v2=true" in flags and "--heartbeat-interval=100" in flags
            urls = [flag.split("=", 1)[1] for flag in flags if "-urls=" in flag]
            assert len(urls) == 4 and all(url.startswith("http://127.0.0.1:") for url in urls)
        else:
            environment = service["environment"]
            assert environment["ZOO_4LW_COMMANDS_WHITELIST"] == "*" and environment["ZOO_TICK_TIME"] == "100"
            servers = environment["ZOO_SERVERS"].split()
            assert len(servers) == len(services)
            assert all(server.split("=", 1)[1].startswith("127.0.0.1:") for server in servers)
            assert all(";127.0.0.1:" in server for server in servers)


@pytest.mark.parametrize("kind", ["etcd", "zookeeper"])
def test_images_build_from_debian(kind: str) -> None:
    lines = (COMPOSE / kind / "Dockerfile").read_text().splitlines()
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases == ["debian:bookworm-slim", f"${{DISCOVERY_{kind.upper()}_IMAGE}}"]
    assert f"ARG DISCOVERY_{kind.upper()}_IMAGE=debian-{kind}" in lines


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", "done"])
    assert wait_until(lambda: next(values), timeout=5, interval=0.001) == "done"


def test_wait_until_fails_with_the_message() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"the sky fell \(after 0.1 s\)"):
        wait_until(lambda: False, timeout=0.1, interval=0.01, message="the sky fell")
    assert time.monotonic() - started < 5


def test_wait_until_can_ignore_errors() -> None:
    def failing() -> bool:
        raise ConnectionError("not yet")

    with pytest.raises(AssertionError) as caught:
        wait_until(failing, timeout=0.05, interval=0.01, ignore=(ConnectionError,))
    assert isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(ConnectionError):
        wait_until(failing, timeout=0.05)


def test_modules_have_docstrings() -> None:
    for name in ["_binaries", "_cluster", "_docker", "_errors", "_etcd", "_http", "_ports", "_process", "_zookeeper"]:
        module = importlib.import_module(f"discovery.servers.{name}")
        assert module.__doc__ and module.__doc__.strip(), name
    assert discovery.testing.waiting.__doc__
