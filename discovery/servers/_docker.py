"""The same servers from Docker: ``compose/*.yml`` brought up through pytest-docker.

Chosen with ``DISCOVERY_SERVERS=docker`` (the default, ``native``, runs the
installed binaries). A docker cluster offers the client-side part of the native
clusters' interface: :meth:`url`, ``hosts``, ``client_urls`` (etcd), ``version``,
``wait_healthy``, ``start`` and ``stop``; it has no members to kill or pause,
since failure scenarios need the native processes. Container ports are
published on 127.0.0.1 only, on ports Docker picks. The compose files are
looked up in ``$DISCOVERY_COMPOSE_DIR``, else in the ``compose/`` directory of
the source tree.
"""

from __future__ import annotations

import abc
import atexit
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal, Self

from discovery.servers._cluster import normalise_root
from discovery.servers._errors import ServerError
from discovery.servers._etcd import endpoint_healthy
from discovery.servers._http import HttpError, request_json
from discovery.servers._zookeeper import four_letter_word, parse_version, serving

if TYPE_CHECKING:
    from pytest_docker.plugin import DockerComposeExecutor

PROVIDER_ENV = "DISCOVERY_SERVERS"
COMPOSE_DIR_ENV = "DISCOVERY_COMPOSE_DIR"
_PROVIDERS = ("native", "docker")
_POLL = 0.2

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


def docker_available(timeout: float = 20.0) -> bool:
    """Whether a Docker engine answers (``docker info`` exits with 0).

    Args:
        timeout: seconds to give ``docker info``.
    """
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info"], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _compose_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "compose", "version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def compose_dir() -> Path:
    """The directory of the compose files: ``$DISCOVERY_COMPOSE_DIR``, else the source tree's ``compose/``."""
    configured = os.environ.get(COMPOSE_DIR_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "compose"


def require_docker() -> None:
    """Check that Docker servers can run: an engine answers and ``docker compose`` exists.

    Raises:
        ServerError: no Docker engine runs, or the compose plugin is missing; the message says what to do.
    """
    if not docker_available():
        raise ServerError(
            f"{PROVIDER_ENV}=docker but no Docker engine is running (`docker info` failed); "
            f"start one, or unset {PROVIDER_ENV} to run the installed etcd and ZooKeeper"
        )
    if not _compose_available():
        raise ServerError(f"{PROVIDER_ENV}=docker but `docker compose` is missing; install the docker compose plugin")


class _ComposeCluster(abc.ABC):
    kind: ClassVar[str]
    client_port: ClassVar[int]

    def __init__(self, members: int = 1) -> None:
        if members not in (1, 3):
            raise ServerError(f"docker {self.kind} clusters have 1 or 3 members, not {members}")
        self.size = members
        self.file = compose_dir() / (f"{self.kind}.yml" if members == 1 else f"{self.kind}-cluster.yml")
        self.services = [self.kind] if members == 1 else [f"{self.kind}{index}" for index in range(members)]
        self.project = f"discovery-{self.kind}-{uuid.uuid4().hex[:8]}"
        self.ports: list[int] = []
        self._compose: DockerComposeExecutor | None = None

    def __enter__(self) -> Self:
        if not self.ports:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def hosts(self) -> str:
        """The published client addresses, ``"127.0.0.1:p1,127.0.0.1:p2"``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def url(self, scheme: str | None = None, root: str = "/services") -> str:
        """A registry URL naming every member.

        Raises:
            ServerError: the cluster is not started.
        """
        if not self.ports:
            raise ServerError(f"docker {self.kind} is not started")
        return f"{scheme or self.kind}://{self.hosts}{normalise_root(root)}"

    def start(self, timeout: float = 120.0) -> Self:
        """``docker compose up --wait`` the services and wait until they answer.

        Args:
            timeout: seconds to wait for health once compose returned.

        Returns:
            The cluster itself.

        Raises:
            ServerError: Docker is unavailable, compose failed, or the servers stayed unhealthy.
        """
        require_docker()
        try:
            # pytest-docker is an optional dependency (the "docker" extra) and imports pytest.
            from pytest_docker.plugin import DockerComposeExecutor, Services
        except ImportError as exc:
            raise ServerError("docker servers need pytest-docker: pip install 'discovery-registry[docker]'") from exc
        if not self.file.is_file():
            raise ServerError(f"compose file {self.file} not found; set {COMPOSE_DIR_ENV}")
        compose = DockerComposeExecutor("docker compose", str(self.file), self.project)
        self._compose = compose
        atexit.register(self.stop)
        try:
            compose.execute("up --wait")
            services = Services(compose)
            self.ports = [int(services.port_for(service, self.client_port)) for service in self.services]
            self.wait_healthy(timeout)
        except Exception as exc:
            self.stop()
            raise ServerError(f"docker {self.kind} did not start: {exc}") from exc
        return self

    def stop(self) -> None:
        """``docker compose down -v``: remove the containers and their volumes (no-op when not started).

        Raises:
            ServerError: compose failed.
        """
        compose, self._compose = self._compose, None
        self.ports = []
        atexit.unregister(self.stop)
        if compose is None:
            return
        try:
            compose.execute("down -v")
        except Exception as exc:
            raise ServerError(f"docker compose down failed for {self.file}: {exc}") from exc

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every service answers its health check.

        Raises:
            ServerError: a service stayed unhealthy.
        """
        deadline = time.monotonic() + timeout
        while not all(self._healthy(port) for port in self.ports):
            if time.monotonic() >= deadline:
                raise ServerError(f"docker {self.kind} not healthy after {timeout:g} s")
            time.sleep(_POLL)

    @abc.abstractmethod
    def _healthy(self, port: int) -> bool:
        """Whether the service published on ``port`` answers its health check."""


class DockerEtcdCluster(_ComposeCluster):
    """etcd 3.5 from ``compose/etcd.yml`` (1 member) or ``compose/etcd-cluster.yml`` (3 members)."""

    kind: ClassVar[str] = "etcd"
    client_port: ClassVar[int] = 2379

    @property
    def client_urls(self) -> list[str]:
        """The published client URLs, ``["http://127.0.0.1:p1", ...]``."""
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def version(self) -> str:
        """The etcd server version.

        Raises:
            ServerError: the server did not answer.
        """
        try:
            return str(request_json(f"{self.client_urls[0]}/version")["etcdserver"])
        except (HttpError, IndexError, KeyError) as exc:
            raise ServerError(f"docker etcd version: {exc}") from exc

    def _healthy(self, port: int) -> bool:
        return endpoint_healthy(f"127.0.0.1:{port}")


class DockerZooKeeperCluster(_ComposeCluster):
    """ZooKeeper 3.8 from ``compose/zookeeper.yml`` (1 member) or ``compose/zookeeper-cluster.yml`` (3)."""

    kind: ClassVar[str] = "zookeeper"
    client_port: ClassVar[int] = 2181

    def version(self) -> str:
        """The ZooKeeper server version.

        Raises:
            ServerError: the server did not answer.
        """
        if not self.ports:
            raise ServerError("docker zookeeper is not started")
        answer = four_letter_word(self.ports[0], "srvr")
        version = parse_version(answer)
        if version is None:
            raise ServerError(f"docker zookeeper version: unexpected srvr answer {answer[:100]!r}")
        return version

    def _healthy(self, port: int) -> bool:
        return serving(port)
