"""Errors of the local-server helpers: a server could not be found, started or queried.

They hang under the package's single root, :class:`discovery.errors.DiscoveryError`,
so a test or the CLI that catches ``DiscoveryError`` also sees a server that did
not come up. They carry fields (the binary's name, the Debian packages to install,
the member's log tail) as well as a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

from discovery.errors import DiscoveryError


class ServerError(DiscoveryError):
    """A local etcd or ZooKeeper server could not be started, queried or stopped."""


class MissingServerBinary(ServerError):
    """A program or jar needed to run a local server is not installed.

    Attributes:
        name: what is missing (``"etcd"``, ``"java"``, ``"zookeeper"``).
        packages: the Debian packages that provide it.
        env_var: the environment variable that points at it instead.
    """

    def __init__(self, name: str, packages: Iterable[str], env_var: str, detail: str = "") -> None:
        self.name = name
        self.packages = tuple(packages)
        self.env_var = env_var
        message = f"{name} not found{f' ({detail})' if detail else ''}: apt-get install {' '.join(self.packages)}"
        message += f", or set {env_var}"
        super().__init__(message)


class ServerStartError(ServerError):
    """A server process exited or did not become healthy in time.

    Attributes:
        member: the name of the member that failed.
        log_tail: the last lines of its log file.
    """

    def __init__(self, member: str, reason: str, log_tail: str) -> None:
        self.member = member
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"{member}: {reason}\n--- last lines of its log ---\n{log_tail}")
