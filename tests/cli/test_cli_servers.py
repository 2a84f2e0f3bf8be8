"""``discovery servers up|status|down`` with a private state directory: servers outlive the command, then stop.

``up`` must leave a supervisor and real servers running after it returns, the
other commands must find and use them without any URL, ``down`` must stop
every process it started (checked by pid) and remove the state, and a server
that cannot start must end ``up`` with one error line and the supervisor's
log tail. Whatever a test leaves running is stopped by pid in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import discovery
from discovery.cli._state import pid_alive
from discovery.testing.waiting import wait_until

if TYPE_CHECKING:
    from tests.cli.conftest import Cli


def status_json(cli: Cli) -> dict[str, Any]:
    result = cli.run("servers", "status", "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def all_pids(state: dict[str, Any]) -> list[int]:
    members = [m["pid"] for cluster in state["clusters"] for m in cluster["members"]]
    return [state["supervisor_pid"], *members]


@pytest.fixture
def servers_cli(cli: Cli) -> Iterator[Cli]:
    """The command with its state dir; whatever ``servers up`` left running is stopped afterwards, by pid."""
    try:
        yield cli
    finally:
        state_file = cli.state_dir / "servers.json"
        if state_file.exists():
            pids = all_pids(json.loads(state_file.read_text()))
            cli.run("servers", "down")
            for pid in pids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_up_status_use_down(servers_cli: Cli) -> None:
    cli = servers_cli
    up = cli.run("servers", "up")
    assert up.code == 0, up.err
    state = status_json(cli)
    assert state["status"] == "ready" and state["supervisor_alive"]
    urls = state["urls"]
    assert set(urls) == {"etcd", "etcd2", "zookeeper"}
    for url in urls.values():
        assert url in up.text
        assert url.startswith(("etcd://127.0.0.1:", "etcd2://127.0.0.1:", "zookeeper://127.0.0.1:"))
        assert url.endswith("/services")
    pids = all_pids(state)
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)

    status = cli.run("servers", "status")
    assert status.code == 0 and urls["zookeeper"] in status.text and str(pids[1]) in status.text

    # Without any URL, the other commands use the running servers: etcd first, or the one --backend names.
    define = cli.run("define", "buzz/api")
    assert define.code == 0, define.err
    assert f"using etcd at {urls['etcd']} (local servers" in define.err
    on_zookeeper = cli.run("--backend", "zookeeper", "define", "zk/only")
    assert f"using zookeeper at {urls['zookeeper']}" in on_zookeeper.err
    with discovery.connect(urls["etcd"]) as registry:
        assert registry.definitions() == {"buzz/api": 1}
    with discovery.connect(urls["zookeeper"]) as registry:
        assert registry.definitions() == {"zk/only": 1}

    again = cli.run("servers", "up")
    assert again.code == 0 and "already running" in again.err
    other = cli.run("servers", "up", "--members", "3")
    assert other.code == 6 and other.err.startswith("error: other local servers already run")

    down = cli.run("servers", "down")
    assert down.code == 0, down.err
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=30, message="every server process gone")
    assert not (cli.state_dir / "servers.json").exists()
    assert not (cli.state_dir / "data").exists()
    gone = cli.run("servers", "status")
    assert gone.code == 5 and gone.err.startswith("error: no local servers in ")
    assert cli.run("--backend", "etcd", "ls").code == 4
    assert cli.run("servers", "down").code == 0


def test_up_reports_a_server_that_does_not_start(servers_cli: Cli, tmp_path: Path) -> None:
    cli = servers_cli
    fake = tmp_path / "fake-etcd"
    fake.write_text("#!/bin/sh\necho 'fake etcd: refusing to start' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    result = cli.run("servers", "up", "--etcd", env={"DISCOVERY_ETCD_BIN": str(fake)})
    assert result.code == 1
    lines = result.err.splitlines()
    (error,) = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    assert lines[error] == "error: local servers failed to start: etcd-0: exited with code 3", result.err
    assert any("fake etcd: refusing to start" in line for line in lines[error + 1 :]), result.err
    assert "Traceback" not in result.err
    assert not (cli.state_dir / "servers.json").exists()


def test_up_names_the_package_of_a_missing_binary(servers_cli: Cli, tmp_path: Path) -> None:
    result = servers_cli.run("servers", "up", "--etcd", env={"DISCOVERY_ETCD_BIN": str(tmp_path / "no-such-etcd")})
    assert result.code == 1
    assert result.err.startswith("error: etcd not found") and "apt-get install etcd-server" in result.err
