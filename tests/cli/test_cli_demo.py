"""``discovery demo seed``: the story replayed; the discovery watch must count every event, exactly.

Small counts keep it fast. At such counts the naive loop may or may not miss
events, so only its being reported is checked; the discovery watch must see
exactly 2 x COUNT on memory:// (in-process writer) and on a real etcd
(a registrant subprocess killed with SIGKILL).
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from discovery.servers import EtcdCluster

if TYPE_CHECKING:
    from tests.cli.conftest import Cli

COUNT = 20


def test_seed_on_memory_counts_every_event(cli: Cli) -> None:
    result = cli.run("demo", "seed", "--backend", "memory", "--count", str(COUNT), "--ttl", "0.5", "--json")
    assert result.code == 0, result.err
    (row,) = [json.loads(line) for line in result.out.splitlines()]
    assert row["backend"] == "memory"
    assert row["url"].startswith("memory://demo-") and "/demo-" in row["url"].split("://", 1)[1]
    assert (row["expected"], row["discovery"]) == (2 * COUNT, 2 * COUNT)
    assert isinstance(row["naive"], int) and 0 <= row["naive"] <= 2 * COUNT
    assert f"memory: naive loop {row['naive']}/{2 * COUNT}, discovery watch {2 * COUNT}/{2 * COUNT}" in result.err


def test_seed_on_etcd_counts_every_event(cli: Cli, etcd_cluster: EtcdCluster) -> None:
    url = etcd_cluster.url("etcd", "/services")
    result = cli.run("demo", "seed", "--url", url, "--count", str(COUNT), "--ttl", "2")
    assert result.code == 0, result.err
    (row,) = [line for line in result.text.splitlines() if line.lstrip("│ ").startswith("etcd ")]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[0] == "etcd"
    naive, expected = (int(n) for n in cells[1].split("/"))
    assert expected == 2 * COUNT and 0 <= naive <= expected
    assert cells[2] == f"{2 * COUNT}/{2 * COUNT}"
    assert "naive loop" in result.text and "discovery watch" in result.text
    assert f"running on {url}" in result.err


def test_seed_starts_and_stops_its_own_servers_when_none_run(cli: Cli) -> None:
    result = cli.run("demo", "seed", "--backend", "etcd2", "--count", "10", "--json")
    assert result.code == 0, result.err
    assert "starting a local etcd for the demo (stopped at the end)" in result.err
    (row,) = [json.loads(line) for line in result.out.splitlines()]
    assert (row["backend"], row["discovery"], row["expected"]) == ("etcd2", 20, 20)
    host = row["url"].split("://", 1)[1].split("/", 1)[0]
    # The servers it started are gone with it: nothing answers on their port any more.
    with socket.socket() as probe:
        assert probe.connect_ex(tuple_address(host)) != 0


def tuple_address(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    return name, int(port)
