"""One server process (:class:`Member`) and the safety net that no server outlives Python.

A member owns its command line, ports, data directory and log file, and the
signals a test needs to play failures: kill (SIGKILL), pause and resume
(SIGSTOP/SIGCONT, which looks like a partition to its peers and clients), stop
(SIGTERM, then SIGKILL after a grace period) and restart on the same data and
ports. Every live member is recorded in a module registry that an ``atexit``
hook kills; when started from the main thread the process also gets a parent
death signal (``setpriv --pdeathsig KILL``), so not even a SIGKILLed Python
leaves servers behind. The signal is tied to the thread that forks, hence the
main thread only: a server started from a worker thread would die with it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from discovery.servers._errors import ServerError, ServerStartError

_registry_lock = threading.Lock()
_live: dict[int, Member] = {}
_temp_dirs: set[Path] = set()

LOG_NAME = "server.log"
_POLL = 0.05


def dying_with_parent(command: Sequence[str]) -> list[str]:
    """``command`` run so that the kernel kills it (SIGKILL) when this process dies, where ``setpriv`` exists.

    The death signal follows the thread that started the process, so it is
    only asked for from the main thread, which lives as long as the process.
    """
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        return [setpriv, "--pdeathsig", "KILL", "--", *command]
    return list(command)


def _proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc, or None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces; the state follows the last ')'.
    return stat.rsplit(")", 1)[-1].split()[0]


def register_temp_dir(path: Path) -> None:
    """Remove ``path`` at interpreter exit unless :func:`release_temp_dir` is called first."""
    with _registry_lock:
        _temp_dirs.add(path)


def release_temp_dir(path: Path) -> None:
    """Remove ``path`` now and forget it."""
    with _registry_lock:
        _temp_dirs.discard(path)
    shutil.rmtree(path, ignore_errors=True)


def _kill_everything() -> None:
    with _registry_lock:
        members = list(_live.values())
        temp_dirs = list(_temp_dirs)
    for member in members:
        member.kill()
    for path in temp_dirs:
        release_temp_dir(path)


atexit.register(_kill_everything)


class Member:
    """One server process of a cluster, with the signals tests use to play failures.

    Attributes:
        kind: ``"etcd"`` or ``"zookeeper"``.
        name: the member's name, unique in its cluster.
        client_port: the port clients connect to on 127.0.0.1.
        peer_port: the etcd peer port or the ZooKeeper quorum port.
        election_port: the ZooKeeper leader election port (None for etcd).
        data_dir: the member's directory: its server data, config and log.
        log_path: the file that receives the server's stdout and stderr.
    """

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        client_port: int,
        peer_port: int,
        data_dir: Path,
        command: Sequence[str],
        health: Callable[[Member], bool],
        election_port: int | None = None,
        env: Mapping[str, str] | None = None,
        stop_grace: float = 10.0,
    ) -> None:
        self.kind = kind
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.election_port = election_port
        self.data_dir = data_dir
        self.log_path = data_dir / LOG_NAME
        self.command = tuple(command)
        self._health = health
        self._env = dict(env) if env is not None else None
        self._stop_grace = stop_grace
        self._lock = threading.RLock()
        self._popen: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("running" if self.running else "stopped")
        return f"<Member {self.kind} {self.name} 127.0.0.1:{self.client_port} {state} pid={self.pid}>"

    @property
    def address(self) -> str:
        """``"127.0.0.1:<client_port>"``."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The process id while the process exists, else None."""
        with self._lock:
            return self._popen.pid if self.running and self._popen is not None else None

    @property
    def running(self) -> bool:
        """Whether the process exists (a paused process is running)."""
        with self._lock:
            return self._popen is not None and self._popen.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the process is stopped by :meth:`pause`."""
        with self._lock:
            return self._paused and self.running

    def healthy(self) -> bool:
        """Whether the process runs, is not paused and answers its health check."""
        return self.running and not self.paused and self._health(self)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the member's log (empty if it has none)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def bind_conflict(self) -> bool:
        """Whether the log says a port was already in use."""
        return "address already in use" in self.log_tail(200).lower()

    def launch(self) -> None:
        """Start the process without waiting for it to be healthy.

        Raises:
            ServerError: the member is already running or the command cannot be executed.
        """
        with self._lock:
            if self.running:
                raise ServerError(f"{self.name} is already running (pid {self.pid})")
            command = dying_with_parent(self.command)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.command)}\n".encode())
                log.flush()
                try:
                    self._popen = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.data_dir,
                        env=self._env,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise ServerError(f"{self.name}: cannot execute {self.command[0]}: {exc}") from exc
            self._paused = False
            with _registry_lock:
                _live[id(self)] = self

    def check_running(self) -> None:
        """Raise unless the process runs unpaused.

        Raises:
            ServerStartError: it was never started, has exited or is paused; the message includes its log tail.
        """
        with self._lock:
            popen = self._popen
            if popen is None:
                raise ServerStartError(self.name, "not started", self.log_tail())
            code = popen.poll()
            if code is not None:
                self._forget()
                raise ServerStartError(self.name, f"exited with code {code}", self.log_tail())
            if self._paused:
                raise ServerStartError(self.name, "is paused; resume() it first", self.log_tail())

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until the member answers its health check.

        Args:
            timeout: seconds to wait.

        Raises:
            ServerStartError: the process exited, is not running, or stayed unhealthy for ``timeout`` seconds;
                the message includes the tail of its log.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            if self._health(self):
                # It may have died during the check, leaving its port to a server that answered in its place.
                self.check_running()
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(self.name, f"not healthy after {timeout:g} s", self.log_tail())
            time.sleep(_POLL)

    def kill(self) -> None:
        """Send SIGKILL and wait until the process is gone (no-op if it is not running)."""
        with self._lock:
            popen = self._popen
            if popen is not None and popen.poll() is None:
                popen.kill()
            if popen is not None:
                popen.wait()
            self._forget()

    def pause(self) -> None:
        """Send SIGSTOP: the process keeps its sockets but answers nothing, like a partitioned node.

        Raises:
            ServerError: the member is not running.
        """
        with self._lock:
            popen = self._require_running("pause")
            popen.send_signal(signal.SIGSTOP)
            self._paused = True
            deadline = time.monotonic() + 5.0
            while _proc_state(popen.pid) not in ("T", "t", None) and time.monotonic() < deadline:
                time.sleep(0.005)

    def resume(self) -> None:
        """Send SIGCONT to a paused member.

        Raises:
            ServerError: the member is not running.
        """
        with self._lock:
            popen = self._require_running("resume")
            popen.send_signal(signal.SIGCONT)
            self._paused = False

    def stop(self) -> None:
        """Send SIGTERM, then SIGKILL if the process is still there after the grace period.

        A paused member is resumed first, since a stopped process does not act on SIGTERM.
        No-op if the member is not running.
        """
        with self._lock:
            popen = self._popen
            if popen is None:
                return
            if popen.poll() is None:
                popen.send_signal(signal.SIGCONT)
                popen.terminate()
                try:
                    popen.wait(self._stop_grace)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
            self._forget()

    def restart(self, timeout: float = 30.0) -> None:
        """Start the member again on the same data directory and ports, and wait until it is healthy.

        A running member is stopped first.

        Args:
            timeout: seconds to wait for health.

        Raises:
            ServerStartError: it exited or stayed unhealthy; the message includes its log tail.
        """
        with self._lock:
            self.stop()
            self.launch()
        self.wait_healthy(timeout)

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        popen = self._popen
        if popen is None or popen.poll() is not None:
            raise ServerError(f"cannot {action} {self.name}: it is not running")
        return popen

    def _forget(self) -> None:
        self._paused = False
        with _registry_lock:
            _live.pop(id(self), None)
