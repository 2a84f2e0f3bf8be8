"""Tests of the local ZooKeeper servers: standalone and a 3-member ensemble, with kazoo clients.

Read-only checks use the session fixtures; the failover test starts its own
ensemble so the shared one stays untouched. Both providers run them
(``DISCOVERY_SERVERS=docker``: members are containers, killed, stopped and
restarted through the engine).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from discovery.servers import DockerMember, ServerError, ZooKeeperCluster, four_letter_word, make_zookeeper_cluster
from discovery.testing.waiting import wait_until

# What a client sees while the ensemble fails over: worth retrying.
TRANSIENT = (KazooException, KazooTimeoutError)


@pytest.fixture
def zk1(zookeeper_cluster: ZooKeeperCluster) -> ZooKeeperCluster:
    return zookeeper_cluster


@pytest.fixture
def zk3(zookeeper_cluster3: ZooKeeperCluster) -> ZooKeeperCluster:
    return zookeeper_cluster3


def client(hosts: str, timeout: float = 10.0) -> KazooClient:
    kazoo = KazooClient(hosts=hosts, timeout=timeout)
    kazoo.start(timeout=15)
    return kazoo


@pytest.fixture
def kazoo_factory() -> Iterator[list[KazooClient]]:
    clients: list[KazooClient] = []
    yield clients
    for kazoo in clients:
        kazoo.stop()
        kazoo.close()


def modes(cluster: ZooKeeperCluster) -> list[str]:
    answers = [cluster.command(member, "srvr") for member in cluster.members if member.running]
    return sorted(re.search(r"Mode: (\w+)", answer).group(1) for answer in answers)  # type: ignore[union-attr]


def test_standalone_answers_four_letter_words(zk1: ZooKeeperCluster) -> None:
    (member,) = zk1.members
    assert four_letter_word(member.client_port, "ruok") == "imok"
    assert "Mode: standalone" in zk1.command(member, "srvr")
    assert re.fullmatch(r"\d+\.\d+\.\d+", zk1.version())
    assert zk1.leader() is member
    assert zk1.hosts == f"127.0.0.1:{member.client_port}"
    assert zk1.url() == f"zookeeper://127.0.0.1:{member.client_port}/services"
    assert zk1.url("zk", "") == f"zk://127.0.0.1:{member.client_port}"
    if isinstance(member, DockerMember):
        assert "binding to port" in member.log_tail(200)
    else:
        assert (member.data_dir / "zoo.cfg").is_file() and member.log_path.is_file()


def test_standalone_serves_kazoo_and_ephemeral_nodes(zk1: ZooKeeperCluster, kazoo_factory: list[KazooClient]) -> None:
    owner = client(zk1.hosts)
    kazoo_factory.append(owner)
    watcher = client(zk1.hosts)
    kazoo_factory.append(watcher)
    path = f"/servers-test/{uuid.uuid4().hex}"
    owner.create(path, b"alive", ephemeral=True, makepath=True)
    data, stat = watcher.get(path)
    assert data == b"alive" and stat.ephemeralOwner == owner.client_id[0]
    owner.stop()
    wait_until(lambda: watcher.exists(path) is None, timeout=10, message="ephemeral node gone with its session")


def test_short_sessions_are_allowed(zk1: ZooKeeperCluster, kazoo_factory: list[KazooClient]) -> None:
    kazoo = client(zk1.hosts, timeout=1.0)
    kazoo_factory.append(kazoo)
    session = f"sid=0x{kazoo.client_id[0]:x}"
    (member,) = zk1.members
    connections = zk1.command(member, "cons")
    line = next(line for line in connections.splitlines() if session in line)
    assert ",to=1000," in line


def test_ensemble_has_one_leader(zk3: ZooKeeperCluster, kazoo_factory: list[KazooClient]) -> None:
    assert len(zk3.members) == 3
    assert modes(zk3) == ["follower", "follower", "leader"]
    leader = zk3.leader()
    assert "Mode: leader" in zk3.command(leader, "srvr")
    assert all(member.election_port for member in zk3.members)
    kazoo = client(zk3.hosts)
    kazoo_factory.append(kazoo)
    path = f"/servers-test/{uuid.uuid4().hex}"
    kazoo.create(path, b"x", makepath=True)
    for member in zk3.members:
        other = client(member.address)
        kazoo_factory.append(other)
        other.sync(path)
        assert other.get(path)[0] == b"x"


def test_leader_kill_failover_and_rejoin(kazoo_factory: list[KazooClient]) -> None:
    with make_zookeeper_cluster(3) as cluster:
        kazoo = client(cluster.hosts)
        kazoo_factory.append(kazoo)
        old = cluster.leader()
        old.kill()
        assert not old.running and old.pid is None
        new = cluster.leader(timeout=30)
        assert new is not old and new.running
        path = f"/failover/{uuid.uuid4().hex}"
        wait_until(
            lambda: kazoo.create(path, b"after", makepath=True),
            timeout=30,
            message="the client writes again after the leader died",
            ignore=TRANSIENT,
        )
        old.restart()
        assert "Mode: follower" in cluster.command(old, "srvr")
        assert modes(cluster) == ["follower", "follower", "leader"]
        rejoined = client(old.address)
        kazoo_factory.append(rejoined)
        rejoined.sync(path)
        assert rejoined.get(path)[0] == b"after"


def test_stopped_member_refuses_commands() -> None:
    with make_zookeeper_cluster() as cluster:
        (member,) = cluster.members
        member.stop()
        with pytest.raises(ServerError):
            cluster.command(member, "ruok", timeout=1.0)
        with pytest.raises(ServerError, match="no member is running"):
            cluster.wait_healthy(timeout=1.0)
        member.restart()
        assert cluster.command(member, "ruok") == "imok"
