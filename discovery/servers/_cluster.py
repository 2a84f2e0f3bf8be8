"""What etcd and ZooKeeper clusters share: directories, start with retry, stop, leader polling.

A cluster owns a directory (a fresh temporary one, or the caller's
``base_dir``) with one subdirectory per member. ``start()`` picks free ports,
launches every member and waits until each is healthy; when a member lost a
race for its port ("address already in use" in its log) the whole attempt is
torn down and retried on new ports with fresh data directories, since a
cluster's membership is fixed by its first start. Any failure stops what was
started, so ``stop()`` after a partial start is never needed but always safe.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from discovery.errors import InvalidValue
from discovery.servers._errors import ServerError, ServerStartError
from discovery.servers._ports import free_ports
from discovery.servers._process import Member, register_temp_dir, release_temp_dir

_START_ATTEMPTS = 3
_POLL = 0.05


def normalise_root(root: str) -> str:
    """``root`` as a URL path: one leading slash, no trailing one; empty stays empty."""
    root = root.rstrip("/")
    return root if not root or root.startswith("/") else "/" + root


class Cluster(abc.ABC):
    """A set of local server processes of one kind, started and stopped together.

    Attributes:
        size: the number of members.
        members: the members, once :meth:`start` has run (empty before).
    """

    kind: ClassVar[str]
    ports_per_member: ClassVar[int] = 2
    default_timeout: ClassVar[float] = 30.0
    parallel_stop: ClassVar[bool] = True

    def __init__(self, size: int, base_dir: Path | None) -> None:
        if size < 1:
            raise InvalidValue("members", size, "a cluster needs at least one member")
        self.size = size
        self.members: list[Member] = []
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._dir: Path | None = None
        self._owns_dir = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.hosts or 'not started'}>"

    def __enter__(self) -> Self:
        if not self.members:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def directory(self) -> Path | None:
        """The directory holding the members' data directories (None before start and after stop)."""
        return self._dir

    @property
    def hosts(self) -> str:
        """The client addresses, ``"127.0.0.1:p1,127.0.0.1:p2"``."""
        return ",".join(member.address for member in self.members)

    def url(self, scheme: str | None = None, root: str = "/services") -> str:
        """A registry URL naming every member, e.g. ``"etcd://127.0.0.1:23791,127.0.0.1:23792/services"``.

        Args:
            scheme: the URL scheme; the cluster's kind by default.
            root: the path under which the registry keeps its keys.

        Returns:
            The URL.

        Raises:
            ServerError: the cluster is not started.
        """
        self._require_started()
        return f"{scheme or self.kind}://{self.hosts}{normalise_root(root)}"

    def start(self, timeout: float | None = None) -> Self:
        """Start every member and wait until each one is healthy.

        Args:
            timeout: seconds for the whole start, retries on port conflicts included;
                the cluster kind's default when None.

        Returns:
            The cluster itself.

        Raises:
            ServerStartError: a member exited or stayed unhealthy; its log tail is in the message.
            ServerError: the cluster is already started, or ``base_dir`` holds a previous member's data.
            MissingServerBinary: the server program is not installed.
        """
        if self.members:
            raise ServerError(f"{self!r} is already started")
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        try:
            self._prepare_directory()
            attempt = 0
            while True:
                attempt += 1
                self.members = self._make_members(free_ports(self.size * self.ports_per_member))
                try:
                    for member in self.members:
                        member.launch()
                    self._wait_members(deadline, self.members)
                    self._started()
                    return self
                except ServerStartError:
                    conflict = any(member.bind_conflict() for member in self.members)
                    if not conflict or attempt == _START_ATTEMPTS or time.monotonic() >= deadline:
                        raise
                    self._stop_members()
                    for member in self.members:
                        shutil.rmtree(member.data_dir, ignore_errors=True)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every member (resuming paused ones first) and remove the temporary directory.

        A ``base_dir`` given by the caller is kept, with the members' data and logs.
        Safe to call more than once, and after a failed or partial start.
        """
        self._stop_members()
        self.members = []
        if self._dir is not None and self._owns_dir:
            release_temp_dir(self._dir)
        self._dir = None
        self._owns_dir = False

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running member answers its health check.

        Args:
            timeout: seconds to wait; the cluster kind's default when None.

        Raises:
            ServerStartError: a member stayed unhealthy (a paused member never is); its log tail is in the message.
            ServerError: the cluster is not started or no member is running.
        """
        self._require_started()
        running = [member for member in self.members if member.running]
        if not running:
            raise ServerError(f"{self!r}: no member is running")
        self._wait_members(time.monotonic() + (self.default_timeout if timeout is None else timeout), running)

    def leader(self, timeout: float = 10.0) -> Member:
        """The member that currently leads, waiting for an election in progress to end.

        Only running, unpaused members are asked; a member counts as leader when
        it says so itself.

        Args:
            timeout: seconds to wait for a leader.

        Returns:
            The leading member (the only member of a one-member cluster).

        Raises:
            ServerError: the cluster is not started or no leader emerged in time.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        while True:
            found = self._find_leader()
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise ServerError(f"{self!r}: no leader after {timeout:g} s")
            time.sleep(_POLL)

    def reachable_member(self) -> Member:
        """A running, unpaused member to send a request to.

        Raises:
            ServerError: the cluster is not started or every member is down or paused.
        """
        self._require_started()
        for member in self.members:
            if member.running and not member.paused:
                return member
        raise ServerError(f"{self!r}: every member is stopped or paused")

    @abc.abstractmethod
    def _make_members(self, ports: list[int]) -> list[Member]:
        """Build (not launch) the members on these ports, writing their config files."""

    @abc.abstractmethod
    def _find_leader(self) -> Member | None:
        """One round of asking the members who leads; None when none does right now."""

    @abc.abstractmethod
    def _started(self) -> None:
        """Learn what the running cluster tells (member ids...), once every member is healthy."""

    def _member_dir(self, name: str) -> Path:
        if self._dir is None:
            raise ServerError(f"{self!r} has no directory")
        return self._dir / name

    def _prepare_directory(self) -> None:
        if self._base_dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"discovery-{self.kind}-"))
            self._owns_dir = True
            register_temp_dir(self._dir)
            return
        self._base_dir.mkdir(parents=True, exist_ok=True)
        used = sorted(path.name for path in self._base_dir.glob(f"{self.kind}-*") if any(path.iterdir()))
        if used:
            raise ServerError(f"{self._base_dir} already holds member data ({', '.join(used)}); give an empty base_dir")
        self._dir = self._base_dir
        self._owns_dir = False

    def _wait_members(self, deadline: float, members: list[Member]) -> None:
        # All members are watched at once: one that exits fails the start at
        # once instead of after the others waited in vain for a quorum.
        pending = list(members)
        while True:
            for member in members:
                member.check_running()
            pending = [member for member in pending if not member.healthy()]
            if not pending:
                # A member that died during its check may have left its port to
                # another server that answered in its place.
                for member in members:
                    member.check_running()
                return
            if time.monotonic() >= deadline:
                first = pending[0]
                raise ServerStartError(first.name, "not healthy in time", first.log_tail())
            time.sleep(_POLL)

    def _stop_members(self) -> None:
        members = [member for member in self.members if member.running]
        if len(members) <= 1 or not self.parallel_stop:
            for member in members:
                member.stop()
            return
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            list(pool.map(Member.stop, members))

    def _require_started(self) -> None:
        if not self.members:
            raise ServerError(f"{type(self).__name__} is not started")
