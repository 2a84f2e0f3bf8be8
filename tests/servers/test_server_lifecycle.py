"""Tests that servers never leak: stop cleans up after pauses, kills and failed starts, and at exit.

Each test starts its own small etcd (a fraction of a second) or a fake server
script, and checks the processes and directories afterwards with ``psutil``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

import discovery.servers._cluster as cluster_module
from discovery.servers import EtcdCluster, ServerError, ServerStartError, ZooKeeperCluster, free_ports
from discovery.testing.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs; an unreaped zombie (an orphan whose reaper is slow) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make temporary directories of this test land in a directory of its own, to check what is left."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def fake_server(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-etcd"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_stop_removes_directory_and_processes(private_tmp: Path) -> None:
    cluster = EtcdCluster().start()
    directory = cluster.directory
    pids = [member.pid for member in cluster.members]
    assert directory is not None and directory.parent == private_tmp and directory.is_dir()
    cluster.stop()
    assert not directory.exists()
    assert all(pid is not None and gone(pid) for pid in pids)
    assert cluster.members == [] and cluster.directory is None
    cluster.stop()
    with pytest.raises(ServerError, match="not started"):
        cluster.url()


def test_stop_after_pause_and_kill(private_tmp: Path) -> None:
    with EtcdCluster(3) as cluster:
        paused, killed, _ = cluster.members
        pids = [member.pid for member in cluster.members]
        paused.pause()
        assert psutil.Process(paused.pid).status() == psutil.STATUS_STOPPED
        killed.kill()
    assert all(pid is not None and gone(pid) for pid in pids)
    assert list(private_tmp.iterdir()) == []


def test_caller_base_dir_is_kept(tmp_path: Path) -> None:
    with EtcdCluster(base_dir=tmp_path) as cluster:
        (member,) = cluster.members
        assert member.data_dir == tmp_path / "etcd-0"
    assert (tmp_path / "etcd-0" / "server.log").is_file()
    with pytest.raises(ServerError, match="already holds member data"):
        EtcdCluster(base_dir=tmp_path).start()


def test_server_that_exits_fails_start_with_its_log(tmp_path: Path, private_tmp: Path) -> None:
    binary = fake_server(tmp_path, "echo 'fake-etcd: disk on fire' >&2\nexit 3")
    cluster = EtcdCluster(3, binary=binary)
    with pytest.raises(ServerStartError, match="exited with code 3") as caught:
        cluster.start(timeout=10)
    assert "disk on fire" in str(caught.value) and "disk on fire" in caught.value.log_tail
    assert cluster.members == [] and cluster.directory is None
    assert list(private_tmp.iterdir()) == []


def test_server_that_never_gets_healthy_is_stopped(
    tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("FAKE_SERVER_PID_FILE", str(pid_file))
    binary = fake_server(tmp_path, 'echo $$ >> "$FAKE_SERVER_PID_FILE"\necho waiting-forever\nexec sleep 600')
    cluster = EtcdCluster(binary=binary)
    with pytest.raises(ServerStartError, match="not healthy") as caught:
        cluster.start(timeout=1.0)
    assert "waiting-forever" in str(caught.value)
    pids = [int(line) for line in pid_file.read_text().split()]
    assert len(pids) == 1 and gone(pids[0])
    assert list(private_tmp.iterdir()) == []


def test_start_retries_on_a_port_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        calls: list[int] = []

        def ports_with_conflict(count: int) -> list[int]:
            calls.append(count)
            ports = free_ports(count)
            return [taken, *ports[1:]] if len(calls) == 1 else ports

        monkeypatch.setattr(cluster_module, "free_ports", ports_with_conflict)
        with EtcdCluster() as cluster:
            assert len(calls) == 2
            assert cluster.members[0].client_port != taken
            assert cluster.version()


def test_started_cluster_refuses_a_second_start() -> None:
    with EtcdCluster() as cluster, pytest.raises(ServerError, match="already started"):
        cluster.start()


def test_free_ports_are_distinct_bindable_and_never_reused() -> None:
    first = free_ports(20)
    second = free_ports(20)
    assert len(set(first) | set(second)) == 40
    for port in first[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 17000:
        assert all(port < low for port in first + second), "ports stay out of the ephemeral range"


def run_child(code: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def test_atexit_stops_servers_the_program_forgot() -> None:
    child = run_child(
        "from discovery.servers import EtcdCluster\n"
        "cluster = EtcdCluster().start()\n"
        "print(cluster.members[0].pid, cluster.directory, flush=True)\n"
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    pid, directory = out.split()
    assert gone(int(pid))
    assert not Path(directory).exists()


def test_killed_python_takes_its_servers_along() -> None:
    child = run_child(
        "import time\n"
        "from discovery.servers import EtcdCluster\n"
        "cluster = EtcdCluster().start()\n"
        "print(cluster.members[0].pid, cluster.directory, flush=True)\n"
        "time.sleep(600)\n"
    )
    assert child.stdout is not None
    pid, directory = child.stdout.readline().split()
    try:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        wait_until(lambda: gone(int(pid)), timeout=10, message="etcd dies with the Python that started it")
    finally:
        if not gone(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
        child.stdout.close()


def test_zookeeper_stop_cleans_up(private_tmp: Path) -> None:
    cluster = ZooKeeperCluster().start()
    pid = cluster.members[0].pid
    cluster.members[0].pause()
    cluster.stop()
    assert pid is not None and gone(pid)
    assert list(private_tmp.iterdir()) == []
