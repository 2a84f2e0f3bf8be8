"""The registries a run measures: one :class:`Target` per backend, named by its label.

A target is a registry URL plus what the workloads need to know about it: the
backend label (``memory``, ``etcd``, ``etcd2``, ``zookeeper``), the hosts for
bare clients and server counters, the root, and URLs with extra options (the
ZooKeeper session timeout that plays the ttl). :class:`Naming` gives every
run its own service paths (``bench-<run id>/<workload>/...``), so a run
against an existing registry never collides with its data or a previous run.
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import discovery

BACKEND_ORDER = ("memory", "etcd", "etcd2", "zookeeper")
_ALIASES = {"zk": "zookeeper"}
_DEFAULT_PORTS = {"etcd": 2379, "etcd2": 2379, "zookeeper": 2181}


def backend_label(scheme: str) -> str:
    """The backend a URL scheme names (``zk`` is ``zookeeper``)."""
    scheme = scheme.lower()
    return _ALIASES.get(scheme, scheme)


@dataclass(frozen=True)
class Target:
    """One registry under test.

    Attributes:
        label: the backend label used as the report's column.
        url: the registry URL (scheme, hosts, root, options).
        local: whether the benchmark started its server itself.
    """

    label: str
    url: str
    local: bool = False

    @property
    def scheme(self) -> str:
        """The URL scheme, lower case."""
        return urllib.parse.urlsplit(self.url).scheme.lower()

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """``(host, port)`` pairs of the URL, with the backend's default port filled in."""
        netloc = urllib.parse.urlsplit(self.url).netloc
        default = _DEFAULT_PORTS.get(self.label.split("#", 1)[0], 0)
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

        ZooKeeper's instances live as long as the session, whose timeout is a
        connection option; the other backends take the ttl per registration.
        """
        return {"session_timeout": ttl} if self.label == "zookeeper" else {}


def targets_from_urls(urls: list[str]) -> list[Target]:
    """Targets for registry URLs given on the command line, labelled by backend.

    A second URL of the same backend gets ``#2`` after its label.
    """
    targets: list[Target] = []
    seen: dict[str, int] = {}
    for url in urls:
        label = backend_label(urllib.parse.urlsplit(url).scheme)
        seen[label] = seen.get(label, 0) + 1
        targets.append(Target(label if seen[label] == 1 else f"{label}#{seen[label]}", url))
    return targets


def base_label(label: str) -> str:
    """The backend of a target label (``etcd#2`` is ``etcd``)."""
    return label.split("#", 1)[0]


class Naming:
    """Service paths unique to one run: ``bench-<run id>/<workload>/<part>...``."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or secrets.token_hex(4)

    def service(self, workload: str, *parts: object) -> str:
        """A service path for ``workload`` and the given parts (round, size...)."""
        return "/".join([f"bench-{self.run_id}", workload, *(str(part) for part in parts)])
