"""The README's security examples, run against real servers: the etcd role, its use, and the ZooKeeper ACLs.

The ``etcdctl`` lines of the README are applied through etcd's HTTP API
(Debian's etcd-server ships no etcdctl): each line is translated, none is
skipped, and an unknown one fails the test. The Python examples run as
written, but for the servers' addresses.
"""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from discovery.servers import EtcdCluster, ZooKeeperCluster

README = Path(__file__).resolve().parent.parent / "README.md"
_README_ETCD = "127.0.0.1:2379"
_README_ZOOKEEPER = "127.0.0.1:2181"


def example(name: str) -> str:
    """The code block after ``<!-- security-example:NAME -->``."""
    found = re.search(rf"<!-- security-example:{name} -->\n```\w+\n(.*?)```", README.read_text(), flags=re.S)
    assert found, f"the README's security example {name!r} is missing"
    return found.group(1)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _range_end(prefix: str) -> str:
    data = bytearray(prefix.encode())
    data[-1] += 1
    return base64.b64encode(bytes(data)).decode()


class EtcdAdmin:
    """etcd's root user, applying ``etcdctl`` lines through the v3 HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._token = ""

    def post(self, path: str, body: dict[str, object]) -> None:
        headers = {"Authorization": self._token} if self._token else {}
        requests.post(self.url + path, json=body, headers=headers, timeout=10).raise_for_status()

    def login(self, password: str) -> None:
        """Act as ``root`` from now on."""
        answer = requests.post(
            self.url + "/v3/auth/authenticate", json={"name": "root", "password": password}, timeout=10
        )
        answer.raise_for_status()
        self._token = answer.json()["token"]

    def etcdctl(self, line: str) -> None:
        """Apply one ``etcdctl`` command line of the README.

        Raises:
            AssertionError: a command this translation does not know.
        """
        words = shlex.split(line)
        assert words[0] == "etcdctl", line
        match words[1:]:
            case ["role", "add", role]:
                self.post("/v3/auth/role/add", {"name": role})
            case ["role", "grant-permission", role, "--prefix=true", kind, key]:
                perm = {"permType": kind.upper(), "key": _b64(key), "range_end": _range_end(key)}
                self.post("/v3/auth/role/grant", {"name": role, "perm": perm})
            case ["user", "add", credentials]:
                user, _, password = credentials.partition(":")
                self.post("/v3/auth/user/add", {"name": user, "password": password})
            case ["user", "grant-role", user, role]:
                self.post("/v3/auth/user/grant", {"user": user, "role": role})
            case _:
                raise AssertionError(f"no translation for {line!r}")


@pytest.fixture(scope="module")
def secured_etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(members=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def zookeeper() -> Iterator[ZooKeeperCluster]:
    with ZooKeeperCluster(members=1) as cluster:
        yield cluster


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_etcd_role_example_grants_what_the_readme_says(secured_etcd: EtcdCluster) -> None:
    secured_etcd.enable_auth("pw")
    admin = EtcdAdmin(secured_etcd.client_urls[0])
    admin.login("pw")
    commands = [line for line in example("etcd-role").splitlines() if line.strip()]
    assert commands and all(line.startswith("etcdctl ") for line in commands)
    for line in commands:
        admin.etcdctl(line)
    output = _run(example("etcd-use").replace(_README_ETCD, secured_etcd.members[0].address))
    assert "refused: other/api/host-1:8080" in output
    assert "Snapshot(revision=" in output


def test_the_zookeeper_acl_example_keeps_others_out_and_lets_everyone_watch(zookeeper: ZooKeeperCluster) -> None:
    output = _run(example("zookeeper-acl").replace(_README_ZOOKEEPER, zookeeper.members[0].address))
    assert "EventKind.ADDED" in output
    assert "refused: team/api/host-1:8080" in output
