"""Tests of the local etcd servers: one member and a 3-member cluster, their APIs, compaction and failures.

Read-only checks use the session fixtures; tests that compact, kill or pause
start their own cluster so the shared ones stay untouched. Both providers run
them (``DISCOVERY_SERVERS=docker``: members are containers, killed, paused and
restarted through the engine); the tests of the native constructor's options
start native servers whatever the provider.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from discovery.servers import DockerMember, EtcdCluster, Member, ServerError, make_etcd_cluster
from discovery.testing.waiting import wait_until

# Requests here go to 127.0.0.1 only; proxies from the environment must not interfere.
http = requests.Session()
http.trust_env = False


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(member: Member, key: str, value: str) -> int:
    answer = http.post(f"http://{member.address}/v3/kv/put", json={"key": b64(key), "value": b64(value)}, timeout=5)
    answer.raise_for_status()
    return int(answer.json()["header"]["revision"])


def get(member: Member, key: str, revision: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    if revision is not None:
        body["revision"] = str(revision)
    answer = http.post(f"http://{member.address}/v3/kv/range", json=body, timeout=5)
    result: dict[str, Any] = answer.json()
    return result


def value_of(member: Member, key: str) -> str | None:
    kvs = get(member, key).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def healthy(member: Member) -> bool:
    try:
        return http.get(f"http://{member.address}/health", timeout=0.5).json().get("health") == "true"
    except requests.RequestException:
        return False


@pytest.fixture
def etcd1(etcd_cluster: EtcdCluster) -> EtcdCluster:
    return etcd_cluster


@pytest.fixture
def etcd3(etcd_cluster3: EtcdCluster) -> EtcdCluster:
    return etcd_cluster3


@pytest.fixture
def private_etcd() -> Iterator[EtcdCluster]:
    with make_etcd_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def private_etcd3() -> Iterator[EtcdCluster]:
    with make_etcd_cluster(3) as cluster:
        yield cluster


def test_single_member_is_healthy_and_addressed(etcd1: EtcdCluster) -> None:
    (member,) = etcd1.members
    assert member.running and member.pid is not None
    assert healthy(member)
    assert etcd1.client_urls == [f"http://127.0.0.1:{member.client_port}"]
    assert etcd1.url() == f"etcd://127.0.0.1:{member.client_port}/services"
    assert etcd1.url("etcd2", "/reg") == f"etcd2://127.0.0.1:{member.client_port}/reg"
    assert etcd1.hosts == member.address
    assert etcd1.version().startswith("3.")
    assert etcd1.leader() is member
    if isinstance(member, DockerMember):
        assert "serving client traffic" in member.log_tail(200)
    else:
        assert member.log_path.is_file() and member.log_path.parent == member.data_dir


def test_v2_api_is_enabled(etcd1: EtcdCluster) -> None:
    base = etcd1.client_urls[0]
    assert http.get(f"{base}/v2/keys", timeout=5).json()["node"]["dir"] is True
    written = http.put(f"{base}/v2/keys/servers-test/v2", data={"value": "hello", "ttl": "30"}, timeout=5)
    assert written.status_code in (200, 201), written.text
    node = http.get(f"{base}/v2/keys/servers-test/v2", timeout=5).json()["node"]
    assert node["value"] == "hello" and node["ttl"] > 0


def test_v3_gateway_put_and_range(etcd1: EtcdCluster) -> None:
    (member,) = etcd1.members
    before = etcd1.revision()
    revision = put(member, "servers-test/v3", "world")
    assert revision == before + 1 == etcd1.revision()
    assert value_of(member, "servers-test/v3") == "world"


def test_compaction_makes_old_revisions_unreadable(private_etcd: EtcdCluster) -> None:
    (member,) = private_etcd.members
    old = put(member, "compact/a", "1")
    put(member, "compact/a", "2")
    assert get(member, "compact/a", old)["kvs"]
    compacted = private_etcd.compact()
    assert compacted == private_etcd.revision() > old
    refused = get(member, "compact/a", old)
    assert "compacted" in refused["error"]
    with pytest.raises(ServerError, match="compacted"):
        private_etcd.compact(old)


def test_watch_from_compacted_revision_is_canceled(private_etcd: EtcdCluster) -> None:
    (member,) = private_etcd.members
    old = put(member, "watch/a", "1")
    put(member, "watch/a", "2")
    compacted = private_etcd.compact()
    request = {"create_request": {"key": b64("watch/"), "range_end": b64("watch0"), "start_revision": str(old)}}
    with http.post(f"http://{member.address}/v3/watch", json=request, stream=True, timeout=10) as stream:
        for line in stream.iter_lines():
            result = json.loads(line)["result"]
            if result.get("canceled"):
                assert int(result["compact_revision"]) == compacted
                break
            assert result.get("created") and not result.get("events"), result
        else:
            pytest.fail("the watch stream ended without a cancel")


def test_auto_compaction_flags(tmp_path: Any) -> None:
    with EtcdCluster(base_dir=tmp_path, auto_compaction=True, auto_compaction_retention="1m") as cluster:
        command = cluster.members[0].command
        assert "--auto-compaction-mode=periodic" in command
        assert "--auto-compaction-retention=1m" in command
        assert "--enable-v2=true" in command


def test_v2_can_be_disabled() -> None:
    with EtcdCluster(enable_v2=False) as cluster:
        assert http.get(f"{cluster.client_urls[0]}/v2/keys", timeout=5).status_code == 404


def test_three_members_agree_on_a_leader(etcd3: EtcdCluster) -> None:
    assert len(etcd3.members) == 3
    assert len({member.client_port for member in etcd3.members} | {m.peer_port for m in etcd3.members}) == 6
    assert all(healthy(member) for member in etcd3.members)
    leader = etcd3.leader()
    leader_id = etcd3.member_id(leader)
    assert {etcd3.status(member)["leader"] for member in etcd3.members} == {leader_id}
    assert etcd3.url().count("127.0.0.1:") == 3


def test_killed_leader_is_replaced_and_rejoins(private_etcd3: EtcdCluster) -> None:
    cluster = private_etcd3
    old = cluster.leader()
    old_pid = old.pid
    old.kill()
    assert not old.running and old.pid is None
    assert old_pid is not None
    new = cluster.leader(timeout=15)
    assert new is not old
    put(new, "failover/key", "written-while-down")
    old.restart()
    assert old.running and old.pid != old_pid
    cluster.wait_healthy()
    assert cluster.status(old)["leader"] == cluster.member_id(cluster.leader())
    assert value_of(old, "failover/key") == "written-while-down"


def test_paused_follower_misses_nothing(private_etcd3: EtcdCluster) -> None:
    cluster = private_etcd3
    leader = cluster.leader()
    follower = next(member for member in cluster.members if member is not leader)
    follower.pause()
    try:
        assert follower.paused and follower.running
        assert not healthy(follower)
        put(leader, "pause/key", "while-paused")
    finally:
        follower.resume()
    assert not follower.paused
    wait_until(lambda: healthy(follower), timeout=15, message=f"{follower.name} healthy again after resume")
    assert value_of(follower, "pause/key") == "while-paused"


def test_paused_leader_loses_the_lead(private_etcd3: EtcdCluster) -> None:
    cluster = private_etcd3
    old = cluster.leader()
    old.pause()
    try:
        new = cluster.leader(timeout=15)
        assert new is not old
    finally:
        old.resume()
    cluster.wait_healthy()
    wait_until(lambda: cluster.leader() is new, timeout=15, message="the resumed member follows the new leader")


def test_member_signals_need_a_running_process(private_etcd: EtcdCluster) -> None:
    (member,) = private_etcd.members
    member.stop()
    assert not member.running
    with pytest.raises(ServerError, match="not running"):
        member.pause()
    with pytest.raises(ServerError, match="not running"):
        member.resume()
    member.kill()
    member.stop()
    member.restart()
    assert member.running and healthy(member)
