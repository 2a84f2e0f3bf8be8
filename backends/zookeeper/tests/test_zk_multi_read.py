"""The multiRead module alone, against a real ZooKeeper 3.8: many reads in one request, failures per read."""

from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl

from discovery_zookeeper._multi_read import MultiRead, ReadFailed, read_many


def test_reads_data_and_stats_in_order(kazoo_client: KazooClient, root: str) -> None:
    client = kazoo_client
    paths = [f"{root}/n{i}" for i in range(450)]
    for i, path in enumerate(paths):
        client.create(path, f"value {i}".encode(), makepath=True, ephemeral=i % 2 == 0)
    client.create(f"{root}/empty", b"")
    wanted = [*paths, f"{root}/empty"]
    replies = read_many(client, wanted, chunk=200)
    assert [len(paths) for paths, _ in replies] == [200, 200, 51]
    assert [path for paths, _ in replies for path in paths] == wanted
    results = [result for _, reply in replies for result in reply.get(timeout=10)]
    assert len(results) == len(wanted)
    for path, result in zip(wanted, results, strict=True):
        assert not isinstance(result, ReadFailed)
        data, stat = result
        expected, expected_stat = client.get(path)
        assert (data, stat) == (expected, expected_stat)
    assert results[-1][0] == b""  # type: ignore[index]
    assert results[0][1].ephemeralOwner == client.client_id[0]  # type: ignore[index]
    assert results[1][1].ephemeralOwner == 0  # type: ignore[index]


def test_a_missing_or_refused_znode_fails_alone(kazoo_client: KazooClient, root: str) -> None:
    client = kazoo_client
    client.create(f"{root}/here", b"yes", makepath=True)
    client.create(f"{root}/secret", b"no", acl=[make_digest_acl("someone", "else", all=True)])
    results = MultiRead((f"{root}/here", f"{root}/gone", f"{root}/secret", f"{root}/here"))
    reply = client.handler.async_result()
    client._call(results, reply)
    here, gone, secret, again = reply.get(timeout=10)
    assert here[0] == again[0] == b"yes"  # type: ignore[index]
    assert gone == ReadFailed(-101)
    assert secret == ReadFailed(NoAuthError.code)
    assert isinstance(secret.exception(), NoAuthError)


def test_an_empty_request_is_answered_empty(kazoo_client: KazooClient) -> None:
    client = kazoo_client
    reply = client.handler.async_result()
    client._call(MultiRead(()), reply)
    assert reply.get(timeout=10) == []
