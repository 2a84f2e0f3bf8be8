"""The registries a run measures: one :class:`BenchTarget` per backend, named by its label, with its traits.

A target is a registry URL plus what the workloads need to know about it: the
backend label (``memory``, ``etcd``, ``etcd2``, ``zookeeper``), the backend's
:class:`Traits` (in process or behind a server, whether the ttl is the session
timeout...), declared once in :data:`TRAITS` so a workload asks a trait and
never compares backend names, the hosts for bare clients and server counters,
the root, and URLs with extra options (the session timeout that plays the
ttl). :class:`Naming` gives every run its own service paths
(``bench-<run id>/<workload>/...``), so a run against an existing registry
never collides with its data or a previous run.
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import discovery

_ALIASES = {"zk": "zookeeper"}


@dataclass(frozen=True)
class Traits:
    """What the workloads must know about a backend, declared once per backend rather than tested by name.

    Attributes:
        in_process: the store lives inside the registry's own process (memory://): another
            process cannot see it, so registrants are in-process registries whose backend
            is abandoned instead of processes killed.
        server: the server program behind it (``"etcd"``, ``"zookeeper"``); None in process.
        default_port: the port a URL without one means.
        ttl_is_session_timeout: instances live as long as the client's session, whose timeout
            is a connection option (ZooKeeper), rather than a ttl given per registration.
        pipelined_raw_client: the bare client can pipeline writes (kazoo ``create_async``),
            a baseline worth measuring of its own.
        keepalive_per_instance: each instance is kept alive by requests of its own (etcd v2's
            TTL refreshes, a third of the ttl apart: N x 3 / ttl requests a second) rather than
            by one lease or session for all.
        distribution: the distribution that provides the backend plugin.
    """

    in_process: bool = False
    server: str | None = None
    default_port: int = 0
    ttl_is_session_timeout: bool = False
    pipelined_raw_client: bool = False
    keepalive_per_instance: bool = False
    distribution: str = "discovery-registry"

    @property
    def has_server(self) -> bool:
        """Whether a server receives the requests (with its own counters and version)."""
        return self.server is not None


TRAITS: dict[str, Traits] = {
    "memory": Traits(in_process=True),
    "etcd": Traits(server="etcd", default_port=2379, distribution="discovery-registry-etcd"),
    "etcd2": Traits(
        server="etcd", default_port=2379, keepalive_per_instance=True, distribution="discovery-registry-etcd"
    ),
    "zookeeper": Traits(
        server="zookeeper",
        default_port=2181,
        ttl_is_session_timeout=True,
        pipelined_raw_client=True,
        distribution="discovery-registry-zookeeper",
    ),
}
"""Every backend the benchmark knows, in report order, with its traits."""

BACKEND_ORDER = tuple(TRAITS)


def backend_label(scheme: str) -> str:
    """The backend a URL scheme names (``zk`` is ``zookeeper``)."""
    scheme = scheme.lower()
    return _ALIASES.get(scheme, scheme)


def base_label(label: str) -> str:
    """The backend of a target label (``etcd#2`` is ``etcd``)."""
    return label.split("#", 1)[0]


@dataclass(frozen=True)
class BenchTarget:
    """One registry under test.

    Attributes:
        label: the backend label used as the report's column (``etcd``, ``etcd#2``).
        url: the registry URL (scheme, hosts, root, options).
        local: whether the benchmark started its server itself.
    """

    label: str
    url: str
    local: bool = False

    @property
    def backend(self) -> str:
        """The backend measured (the label without its ``#2``)."""
        return base_label(self.label)

    @property
    def traits(self) -> Traits:
        """The backend's traits.

        Raises:
            KeyError: a backend the benchmark does not know.
        """
        return TRAITS[self.backend]

    @property
    def scheme(self) -> str:
        """The URL scheme, lower case."""
        return urllib.parse.urlsplit(self.url).scheme.lower()

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs of the URL, with the backend's default port filled in."""
        netloc = urllib.parse.urlsplit(self.url).netloc
        default = self.traits.default_port
        pairs: list[tuple[str, int]] = []
        for part in filter(None, netloc.split(",")):
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
            pairs.append((host or part, int(port) if port.isdigit() else default))
        return pairs

    @property
    def root(self) -> str:
        """The key root, like ``/services`` (``""`` for none)."""
        path = urllib.parse.urlsplit(self.url).path.strip("/")
        return f"/{path}" if path else ""

    def url_with(self, **options: Any) -> str:
        """The URL with these options added to (or replacing those in) its query string."""
        parts = urllib.parse.urlsplit(self.url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update({name: str(value) for name, value in options.items()})
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def connect(self, **options: Any) -> discovery.Registry:
        """A new registry connected to this target (a context manager).

        Raises:
            DiscoveryError: the registry could not be reached.
        """
        return discovery.connect(self.url, **options)

    def session_options(self, ttl: float) -> dict[str, Any]:
        """Connection options that make an abandoned registrant's instances expire after ``ttl``.

        Where instances live as long as the session (ZooKeeper), its timeout is
        a connection option; the other backends take the ttl per registration.
        """
        return {"session_timeout": ttl} if self.traits.ttl_is_session_timeout else {}


def targets_from_urls(urls: list[str]) -> list[BenchTarget]:
    """Targets for registry URLs given on the command line, labelled by backend.

    A second URL of the same backend gets ``#2`` after its label.
    """
    targets: list[BenchTarget] = []
    seen: dict[str, int] = {}
    for url in urls:
        label = backend_label(urllib.parse.urlsplit(url).scheme)
        seen[label] = seen.get(label, 0) + 1
        targets.append(BenchTarget(label if seen[label] == 1 else f"{label}#{seen[label]}", url))
    return targets


class Naming:
    """Service paths unique to one run: ``bench-<run id>/<workload>/<part>...``."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or secrets.token_hex(4)

    def service(self, workload: str, *parts: object) -> str:
        """A service path for ``workload`` and the given parts (round, size...)."""
        return "/".join([f"bench-{self.run_id}", workload, *(str(part) for part in parts)])
