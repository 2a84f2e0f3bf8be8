"""The docker provider itself, on a real engine: containers on loopback ports, clear failures, nothing left behind.

The session's clusters must be containers whose servers listen on 127.0.0.1
only (host networking, ports chosen by the provider); a cluster that stops
removes its containers; a compose project that cannot start fails with
compose's own output. Run by the docker leg (``make test-docker``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from discovery.servers import (
    DockerEtcdCluster,
    DockerMember,
    DockerZooKeeperCluster,
    ServerError,
    ServerStartError,
    make_etcd_cluster,
    provider,
)
from discovery.servers._docker import COMPOSE_DIR_ENV, compose_dir

pytestmark = pytest.mark.skipif(
    provider() != "docker", reason="containers only (DISCOVERY_SERVERS=docker, as make test-docker sets it)"
)


def containers_of(project: str) -> list[str]:
    """The ids of every container, running or not, of a compose project."""
    result = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


@pytest.mark.parametrize("fixture", ["etcd_cluster", "etcd_cluster3", "zookeeper_cluster", "zookeeper_cluster3"])
def test_session_servers_are_containers_on_loopback_only(fixture: str, request: pytest.FixtureRequest) -> None:
    cluster = request.getfixturevalue(fixture)
    assert isinstance(cluster, DockerEtcdCluster | DockerZooKeeperCluster)
    assert sorted(containers_of(cluster.project)) == sorted(
        member.container[:12] for member in cluster.members if isinstance(member, DockerMember) and member.container
    )
    for member in cluster.members:
        assert isinstance(member, DockerMember)
        assert member.pid is not None
        listening = {
            (connection.laddr.ip, connection.laddr.port)
            for connection in psutil.Process(member.pid).net_connections("tcp")
            if connection.status == psutil.CONN_LISTEN
        }
        assert (("127.0.0.1", member.client_port)) in listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"{member.name} listens beyond loopback: {listening}"


def test_stop_removes_the_containers() -> None:
    cluster = make_etcd_cluster().start()
    assert isinstance(cluster, DockerEtcdCluster)
    (member,) = cluster.members
    assert containers_of(cluster.project)
    cluster.stop()
    assert containers_of(cluster.project) == []
    assert not member.running and member.pid is None
    cluster.stop()


def test_a_compose_failure_reports_compose_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "compose"
    shutil.copytree(compose_dir(), broken)
    (broken / "etcd.yml").write_text("services:\n  etcd:\n    image: discovery-etcd:local\n    no_such_option: 1\n")
    monkeypatch.setenv(COMPOSE_DIR_ENV, str(broken))
    cluster = make_etcd_cluster()
    with pytest.raises(ServerStartError, match="docker compose failed") as caught:
        cluster.start()
    assert "no_such_option" in caught.value.log_tail
    assert containers_of(cluster.project) == []


def test_a_missing_compose_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMPOSE_DIR_ENV, str(tmp_path))
    with pytest.raises(ServerError, match=COMPOSE_DIR_ENV):
        make_etcd_cluster(3).start()
