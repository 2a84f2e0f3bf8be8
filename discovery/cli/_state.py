"""The state directory of ``discovery servers``: where the supervisor says what runs, and where.

The supervisor (:mod:`discovery.cli._supervisor`) writes ``servers.json``
atomically as it goes (``starting``, then ``ready`` with the URLs and the
member pids, or ``failed`` with the error); ``servers up/status/down`` and
every other command read it to find the running local servers. A pid is only
ever signalled after ``/proc`` confirms it still is the process the state
names, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "servers.json"
LOG_FILE = "supervisor.log"
LOCK_FILE = "lock"
DATA_DIR = "data"
SUPERVISOR_MODULE = "discovery.cli._supervisor"

KINDS = ("etcd", "zookeeper")
"""The kinds of local servers, in the order commands prefer them."""

SCHEMES = {"etcd": ("etcd", "etcd2"), "zookeeper": ("zookeeper",)}
"""The URL schemes each kind of server serves: etcd answers the v3 and the v2 API."""

STARTING = "starting"
READY = "ready"
FAILED = "failed"


def default_state_dir() -> Path:
    """``$DISCOVERY_STATE_DIR``, else ``~/.local/state/discovery``."""
    configured = os.environ.get("DISCOVERY_STATE_DIR")
    return Path(configured) if configured else Path.home() / ".local" / "state" / "discovery"


@dataclass
class MemberState:
    """One server process.

    Attributes:
        name: the member's name (``etcd-0``, ``zookeeper-1``...).
        pid: its process id.
        client_port: the port clients connect to on 127.0.0.1.
    """

    name: str
    pid: int | None
    client_port: int


@dataclass
class ClusterState:
    """One running cluster.

    Attributes:
        kind: ``etcd`` or ``zookeeper``.
        version: the server's version.
        members: its processes.
    """

    kind: str
    version: str
    members: list[MemberState] = field(default_factory=list)


@dataclass
class ServersState:
    """What ``servers.json`` holds.

    Attributes:
        status: ``starting``, ``ready`` or ``failed``.
        supervisor_pid: the supervisor's process id.
        kinds: the kinds of servers asked for.
        members: members per cluster.
        clusters: the clusters started so far.
        urls: registry URL per scheme (``etcd``, ``etcd2``, ``zookeeper``), root ``/services``.
        error: why the start failed.
    """

    status: str
    supervisor_pid: int
    kinds: list[str]
    members: int
    clusters: list[ClusterState] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServersState:
        """Rebuild a state from :meth:`to_json`'s output.

        Raises:
            KeyError, TypeError, ValueError: the data is not a state.
        """
        clusters = [
            ClusterState(c["kind"], c["version"], [MemberState(**m) for m in c["members"]]) for c in data["clusters"]
        ]
        return cls(
            status=str(data["status"]),
            supervisor_pid=int(data["supervisor_pid"]),
            kinds=list(data["kinds"]),
            members=int(data["members"]),
            clusters=clusters,
            urls=dict(data["urls"]),
            error=data.get("error"),
        )

    def pids(self) -> list[int]:
        """The member pids, in cluster order."""
        return [m.pid for c in self.clusters for m in c.members if m.pid is not None]


def read_state(state_dir: Path) -> ServersState | None:
    """The state in ``state_dir``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return ServersState.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(state_dir: Path, state: ServersState) -> None:
    """Replace the state file atomically, so a reader never sees half of it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    temporary = state_dir / f".{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.replace(temporary, state_dir / STATE_FILE)


def clear_state(state_dir: Path) -> None:
    """Remove the state file and the servers' data directory (the supervisor's log stays)."""
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(state_dir / DATA_DIR, ignore_errors=True)


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock: two ``servers up`` never start two supervisors."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def is_supervisor(pid: int, state_dir: Path) -> bool:
    """Whether ``pid`` is the supervisor of ``state_dir`` (its command line says so)."""
    command = _cmdline(pid)
    return command is not None and SUPERVISOR_MODULE in command and str(state_dir) in command


def is_member(pid: int, state_dir: Path) -> bool:
    """Whether ``pid`` is a server process whose data lives in ``state_dir``."""
    command = _cmdline(pid)
    return command is not None and str(state_dir / DATA_DIR) in command


def running(state_dir: Path) -> ServersState | None:
    """The state of servers that are ready and whose supervisor still runs, else None."""
    state = read_state(state_dir)
    if state is None or state.status != READY or not pid_alive(state.supervisor_pid):
        return None
    return state
