"""The same servers from Docker: ``compose/*.yml`` brought up through pytest-docker, with members to play failures.

Chosen with ``DISCOVERY_SERVERS=docker`` (the default, ``native``, runs the
installed binaries). :class:`DockerEtcdCluster` and
:class:`DockerZooKeeperCluster` are the native :class:`EtcdCluster` and
:class:`ZooKeeperCluster` with containers for processes: the provider picks
free 127.0.0.1 ports as the native one does, hands them to compose as
``DISCOVERY_<SERVICE>_<CLIENT|PEER|QUORUM|ELECTION>_PORT`` variables (the
containers use host networking and bind 127.0.0.1 only), runs pytest-docker's
setup commands (``up --build --wait`` with ``docker compose``; ``up --build
-d`` with docker-compose v1, which has no ``--wait``) and waits for health
itself. Each member is a :class:`DockerMember` whose kill, pause, resume, stop
and restart go to its container (``docker kill``, ``pause``, ``unpause``,
``stop``, ``start``), so the fault scenarios run unchanged. The compose files
are looked up in ``$DISCOVERY_COMPOSE_DIR``, else in the ``compose/`` directory
of the source tree.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from discovery.servers._cluster import Cluster
from discovery.servers._errors import ServerError, ServerStartError
from discovery.servers._etcd import EtcdCluster, endpoint_healthy
from discovery.servers._ports import free_ports
from discovery.servers._process import Member
from discovery.servers._zookeeper import ZooKeeperCluster, serving

if TYPE_CHECKING:
    from pytest_docker.plugin import DockerComposeExecutor

PROVIDER_ENV = "DISCOVERY_SERVERS"
COMPOSE_DIR_ENV = "DISCOVERY_COMPOSE_DIR"
_PROVIDERS = ("native", "docker")
_START_ATTEMPTS = 3
_DOCKER_TIMEOUT = 120.0
_LOG_LINES = 40
# The container states in which its process exists (a paused one is frozen, not gone).
_ALIVE = frozenset({"running", "paused", "restarting"})

Provider = Literal["native", "docker"]


def provider() -> Provider:
    """Where local servers come from, by ``$DISCOVERY_SERVERS``: ``"native"`` (default) or ``"docker"``.

    Raises:
        ServerError: the variable holds another value.
    """
    value = os.environ.get(PROVIDER_ENV, "").strip().lower() or "native"
    if value == "native":
        return "native"
    if value == "docker":
        return "docker"
    raise ServerError(f"{PROVIDER_ENV}={value!r}: expected one of {', '.join(_PROVIDERS)}")


def _succeeds(command: list[str], timeout: float = 20.0) -> bool:
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def docker_available(timeout: float = 20.0) -> bool:
    """Whether a Docker engine answers (``docker info`` exits with 0).

    Args:
        timeout: seconds to give ``docker info``.
    """
    docker = shutil.which("docker")
    return docker is not None and _succeeds([docker, "info"], timeout)


@dataclass(frozen=True)
class ComposeCommands:
    """How pytest-docker drives compose: the command, and what it runs to set up and to clean up.

    Attributes:
        command: ``"docker compose"`` (v2) or ``"docker-compose"`` (v1).
        setup: the compose subcommands that build and start the services.
        cleanup: the compose subcommands that remove them.
    """

    command: str
    setup: tuple[str, ...]
    cleanup: tuple[str, ...] = ("down -v",)


def compose_commands() -> ComposeCommands:
    """The compose commands for this machine: v2 (``docker compose``) where the plugin exists, else v1.

    v1 (``docker-compose``) has no ``up --wait``; it starts the containers with
    ``up --build -d``, and the clusters wait for their health themselves in both cases.

    Raises:
        ServerError: neither ``docker compose`` nor ``docker-compose`` is installed.
    """
    docker = shutil.which("docker")
    if docker is not None and _succeeds([docker, "compose", "version"]):
        return ComposeCommands("docker compose", ("up --build --wait",))
    if shutil.which("docker-compose") is not None:
        return ComposeCommands("docker-compose", ("up --build -d",))
    raise ServerError(
        f"{PROVIDER_ENV}=docker but neither `docker compose` nor docker-compose is installed; "
        "scripts/docker-up.sh installs docker-compose (Debian), or install the docker compose plugin"
    )


def compose_dir() -> Path:
    """The directory of the compose files: ``$DISCOVERY_COMPOSE_DIR``, else the source tree's ``compose/``."""
    configured = os.environ.get(COMPOSE_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "compose"


def require_docker() -> None:
    """Check that Docker servers can run: an engine answers and compose (v2 or v1) exists.

    Raises:
        ServerError: no Docker engine runs, or compose is missing; the message says what to do.
    """
    if not docker_available():
        raise ServerError(
            f"{PROVIDER_ENV}=docker but no Docker engine is running (`docker info` failed); "
            f"start one (scripts/docker-up.sh), or unset {PROVIDER_ENV} to run the installed etcd and ZooKeeper"
        )
    compose_commands()


class DockerMember(Member):
    """One server in a container of a compose project; its failure signals go to the container.

    :meth:`kill` is ``docker kill`` (SIGKILL), :meth:`pause` and :meth:`resume`
    are ``docker pause`` / ``unpause`` (the cgroup freezer: the server keeps
    its sockets and answers nothing, as with SIGSTOP), :meth:`stop` is
    ``docker stop`` (SIGTERM, SIGKILL after the grace period), and
    :meth:`launch` and :meth:`restart` ``docker start`` the same container: same
    ports, same data. The state is asked from the engine each time, so a
    container that died on its own is seen as stopped. The log is the
    container's (``docker logs``); ``data_dir`` and ``log_path`` name host paths
    that stay empty, since data and log live in the container.

    Attributes:
        container: the container's id, once compose created it (None before).
    """

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        client_port: int,
        peer_port: int,
        election_port: int | None,
        data_dir: Path,
        health: Callable[[Member], bool],
        docker: str,
        stop_grace: float = 10.0,
    ) -> None:
        super().__init__(
            kind=kind,
            name=name,
            client_port=client_port,
            peer_port=peer_port,
            election_port=election_port,
            data_dir=data_dir,
            command=(docker, "start", name),
            health=health,
            stop_grace=stop_grace,
        )
        self.container: str | None = None
        self._docker_binary = docker

    def attach(self, container: str) -> None:
        """Bind the member to the container compose created for it."""
        self.container = container
        self.command = (self._docker_binary, "start", container)

    @property
    def pid(self) -> int | None:
        """The host pid of the container's server while the container runs, else None."""
        status, pid, _ = self._state()
        return pid if status in _ALIVE and pid > 0 else None

    @property
    def running(self) -> bool:
        """Whether the container runs (a paused container is running)."""
        return self._state()[0] in _ALIVE

    @property
    def paused(self) -> bool:
        """Whether the container is frozen by :meth:`pause`."""
        return self._state()[0] == "paused"

    def healthy(self) -> bool:
        """Whether the container runs, is not paused and the server answers its health check."""
        return self._state()[0] == "running" and self._health(self)

    def log_tail(self, lines: int = _LOG_LINES) -> str:
        """The last ``lines`` lines of the container's output (empty if there is no container)."""
        if self.container is None:
            return ""
        try:
            result = subprocess.run(
                [self._docker_binary, "logs", "--tail", str(lines), self.container],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=_DOCKER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.decode("utf-8", "replace").rstrip("\n")

    def launch(self) -> None:
        """``docker start`` the container without waiting for health.

        Raises:
            ServerError: the member is already running, has no container, or the engine refused.
        """
        with self._lock:
            if self.running:
                raise ServerError(f"{self.name} is already running (pid {self.pid})")
            self._docker("start")

    def check_running(self) -> None:
        """Raise unless the container runs unpaused.

        Raises:
            ServerStartError: there is no container, it has exited or is paused; the message includes its log tail.
        """
        status, _, code = self._state()
        if status == "running":
            return
        if self.container is None or status == "created":
            raise ServerStartError(self.name, "not started", self.log_tail())
        if status == "paused":
            raise ServerStartError(self.name, "is paused; resume() it first", self.log_tail())
        if status == "restarting":
            return
        raise ServerStartError(self.name, f"exited with code {code}", self.log_tail())

    def kill(self) -> None:
        """``docker kill`` (SIGKILL), which returns once the container has stopped (no-op if it is not running)."""
        with self._lock:
            if self.running:
                self._docker("kill")

    def pause(self) -> None:
        """``docker pause``: the container's processes are frozen and keep their sockets, like a partitioned node.

        Raises:
            ServerError: the member is not running.
        """
        with self._lock:
            self._require_alive("pause")
            self._docker("pause")

    def resume(self) -> None:
        """``docker unpause`` a paused member (nothing to do for a running one).

        Raises:
            ServerError: the member is not running.
        """
        with self._lock:
            if self._require_alive("resume") == "paused":
                self._docker("unpause")

    def stop(self) -> None:
        """``docker stop``: SIGTERM, then SIGKILL after the grace period; a paused member is unpaused first.

        No-op if the member is not running.
        """
        with self._lock:
            status = self._state()[0]
            if status not in _ALIVE:
                return
            if status == "paused":
                self._docker("unpause")
            self._docker("stop", "--time", str(round(self._stop_grace)))

    def _require_alive(self, action: str) -> str:
        status = self._state()[0]
        if status not in _ALIVE:
            raise ServerError(f"cannot {action} {self.name}: it is not running")
        return status

    def _state(self) -> tuple[str, int, int]:
        """The container's status (``running``, ``paused``, ``exited``...), host pid and exit code."""
        if self.container is None:
            return ("absent", 0, 0)
        output = self._docker("inspect", "--format", "{{.State.Status}} {{.State.Pid}} {{.State.ExitCode}}")
        status, pid, code = output.split()
        return status, int(pid), int(code)

    def _docker(self, *args: str) -> str:
        if self.container is None:
            raise ServerError(f"{self.name}: its container does not exist (the cluster is not started)")
        command = [self._docker_binary, *args, self.container]
        try:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_DOCKER_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{self.name}: `{shlex.join(command)}` failed: {exc}") from exc
        if result.returncode != 0:
            raise ServerError(f"{self.name}: `{shlex.join(command)}` failed: {result.stderr.strip()}")
        return result.stdout


class _ComposeCluster(Cluster):
    """What the docker clusters share: a compose project per cluster, its ports, start, stop and members.

    Placed before the native cluster class in a docker cluster's bases, so its
    start, stop and member making replace the native ones while leadership,
    health and the server's own API (status, compaction, four-letter words)
    stay the native class's, asked over the same 127.0.0.1 ports.
    """

    # Variable names of the ports after the client port, in the order the members take them.
    port_names: ClassVar[tuple[str, ...]]
    default_timeout: ClassVar[float] = 60.0

    def _init_compose(self, members: int, compose: ComposeCommands | None) -> None:
        # The native constructors look up local binaries, which a machine with
        # only Docker lacks: a docker cluster initialises the common part only.
        if members not in (1, 3):
            raise ServerError(f"docker {self.kind} clusters have 1 or 3 members, not {members}")
        Cluster.__init__(self, members, None)
        self.compose = compose
        self.file = compose_dir() / (f"{self.kind}.yml" if members == 1 else f"{self.kind}-cluster.yml")
        self.services = [self.kind] if members == 1 else [f"{self.kind}{index}" for index in range(members)]
        self.project = f"discovery-{self.kind}-{os.urandom(4).hex()}"
        self._executor: DockerComposeExecutor | None = None
        self._cleanup: tuple[str, ...] = ()

    def start(self, timeout: float | None = None) -> Self:
        """Build and start the compose services on free ports and wait until every member is healthy.

        Args:
            timeout: seconds to wait for health once compose returned (building the images
                the first time comes before and is not counted); the default when None.

        Returns:
            The cluster itself.

        Raises:
            ServerStartError: compose failed (its output is in the message), or a member exited
                or stayed unhealthy (its container's log is in the message).
            ServerError: the cluster is already started, Docker, compose or pytest-docker is missing.
        """
        if self.members:
            raise ServerError(f"{self!r} is already started")
        require_docker()
        compose = self.compose or compose_commands()
        if not self.file.is_file():
            raise ServerError(f"compose file {self.file} not found; set {COMPOSE_DIR_ENV}")
        executor_class = _pytest_docker_executor()
        atexit.register(self.stop)
        try:
            self._prepare_directory()
            attempt = 0
            while True:
                attempt += 1
                self.members = self._make_members(free_ports(self.size * (1 + len(self.port_names))))
                try:
                    self._up(executor_class, compose)
                    wait = self.default_timeout if timeout is None else timeout
                    self._wait_members(time.monotonic() + wait, self.members)
                    self._started()
                    return self
                except ServerStartError:
                    # A port taken between its choice and the container's start: new ports, new containers.
                    if attempt == _START_ATTEMPTS or not any(member.bind_conflict() for member in self.members):
                        raise
                    self._down()
        except BaseException as exc:
            # The start's own error says what went wrong; a cleanup failing after it must not hide it.
            try:
                self.stop()
            except ServerError as cleanup:
                exc.add_note(f"cleaning up after it failed too: {cleanup}")
            raise

    def stop(self) -> None:
        """Stop the members (etcd's one at a time, as natively), then remove the containers with compose.

        Safe to call more than once, and after a failed or partial start.

        Raises:
            ServerError: compose failed to remove the project.
        """
        atexit.unregister(self.stop)
        with contextlib.ExitStack() as later:
            later.callback(super().stop)
            later.callback(self._down)
            self._stop_members()

    def _make_members(self, ports: list[int]) -> list[Member]:
        docker = shutil.which("docker") or "docker"
        width = 1 + len(self.port_names)
        members: list[Member] = []
        for index, service in enumerate(self.services):
            client, peer, *election = ports[index * width : (index + 1) * width]
            members.append(
                DockerMember(
                    kind=self.kind,
                    name=service,
                    client_port=client,
                    peer_port=peer,
                    election_port=election[0] if election else None,
                    data_dir=self._member_dir(service),
                    health=self._member_health,
                    docker=docker,
                )
            )
        return members

    def port_environment(self) -> dict[str, str]:
        """The compose variables that give each service its ports, e.g. ``DISCOVERY_ETCD0_CLIENT_PORT``."""
        env: dict[str, str] = {}
        for member in self.members:
            ports = [member.client_port, member.peer_port, member.election_port]
            for name, port in zip(("CLIENT", *self.port_names), ports, strict=False):
                env[f"DISCOVERY_{member.name.upper()}_{name}_PORT"] = str(port)
        return env

    def _up(self, executor_class: Any, compose: ComposeCommands) -> None:
        # pytest-docker runs its commands through a shell: the ports go in as
        # variable assignments before the compose command, so that they win
        # over anything of the same name in the caller's environment.
        assignments = " ".join(f"{name}={value}" for name, value in self.port_environment().items())
        self._executor = executor_class(f"{assignments} {compose.command}", str(self.file), self.project)
        self._cleanup = compose.cleanup
        try:
            for command in compose.setup:
                self._executor.execute(command)
        except Exception as exc:  # pytest-docker raises a bare Exception carrying compose's output
            self._attach()
            raise ServerStartError(f"docker {self.kind} ({self.project})", "docker compose failed", str(exc)) from exc
        self._attach()

    def _attach(self) -> None:
        """Give each member the container compose created for its service (the engine knows them by label)."""
        docker = shutil.which("docker") or "docker"
        result = subprocess.run(
            [
                docker,
                "ps",
                "--all",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--format",
                '{{.Label "com.docker.compose.service"}} {{.ID}}',
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_DOCKER_TIMEOUT,
            check=False,
        )
        containers = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
        for member in self.members:
            if isinstance(member, DockerMember) and member.name in containers:
                member.attach(containers[member.name])

    def _down(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            for command in self._cleanup:
                executor.execute(command)
        except Exception as exc:  # pytest-docker raises a bare Exception carrying compose's output
            raise ServerError(f"docker compose cleanup failed for {self.file} ({self.project}): {exc}") from exc
        finally:
            for member in self.members:
                if isinstance(member, DockerMember):
                    member.container = None

    @abc.abstractmethod
    def _member_health(self, member: Member) -> bool:
        """Whether the server of ``member`` answers its health check."""


def _pytest_docker_executor() -> Any:
    try:
        # pytest-docker is an optional dependency (the "docker" extra) and imports pytest.
        from pytest_docker.plugin import DockerComposeExecutor
    except ImportError as exc:
        raise ServerError("docker servers need pytest-docker: pip install 'discovery-registry[docker]'") from exc
    return DockerComposeExecutor


class DockerEtcdCluster(_ComposeCluster, EtcdCluster):
    """etcd from ``compose/etcd.yml`` (1 member) or ``compose/etcd-cluster.yml`` (3), v2 API on.

    Everything :class:`EtcdCluster` offers works the same (``url()``,
    ``client_urls``, ``leader()``, ``status()``, ``compact()``,
    ``enable_auth()``...), over plain http with the compose files' timings (100 ms
    heartbeats, 1 s election timeout); its members are :class:`DockerMember`.

    Args:
        members: 1, or 3 for a cluster.
        compose: how to run compose; :func:`compose_commands` (found at start) when None.

    Raises:
        ServerError: ``members`` is neither 1 nor 3.
    """

    port_names: ClassVar[tuple[str, ...]] = ("PEER",)

    def __init__(self, members: int = 1, *, compose: ComposeCommands | None = None) -> None:
        self._init_compose(members, compose)
        self.enable_v2 = True
        self.heartbeat_ms = 100
        self.election_ms = 1000
        self.tls = None
        self._context = None
        self._scheme = "http"
        self._member_ids = {}

    def _member_health(self, member: Member) -> bool:
        return endpoint_healthy(member.address)


class DockerZooKeeperCluster(_ComposeCluster, ZooKeeperCluster):
    """ZooKeeper 3.8 from ``compose/zookeeper.yml`` (standalone) or ``compose/zookeeper-cluster.yml`` (3 members).

    Everything :class:`ZooKeeperCluster` offers works the same (``url()``,
    ``hosts``, ``leader()``, ``command()``, ``version()``...), with the compose
    files' settings (100 ms ticks, sessions of 0.2-60 s, no TLS port); its
    members are :class:`DockerMember`.

    Args:
        members: 1 (standalone), or 3 for an ensemble.
        compose: how to run compose; :func:`compose_commands` (found at start) when None.

    Raises:
        ServerError: ``members`` is neither 1 nor 3.
    """

    port_names: ClassVar[tuple[str, ...]] = ("QUORUM", "ELECTION")

    def __init__(self, members: int = 1, *, compose: ComposeCommands | None = None) -> None:
        self._init_compose(members, compose)
        self.tls = None
        self._secure_ports = {}
        self.tick_time_ms = 100
        self.min_session_timeout_ms = 200
        self.max_session_timeout_ms = 60000
        self.heap = "256m"

    def _member_health(self, member: Member) -> bool:
        return serving(member.client_port, timeout=1.0)
