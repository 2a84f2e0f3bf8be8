"""The fixtures base class a backend's test module subclasses to run the conformance suite.

``class TestEtcd(RegistrySuite, EtcdFixtures): pass`` — the fixtures class
says how to reach a registry (``make_url``, a fresh root per test) and how
to play the faults the scenarios need. Required hooks raise
``NotImplementedError`` so a backend that forgets one fails loudly instead of
skipping; scenario fixtures ``yield`` and clean up.
"""

from __future__ import annotations

import abc
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest

from discovery import Registry, connect


class Registrant(abc.ABC):
    """Something that registered instances and can die without deregistering."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Die at once, as with SIGKILL: the instances must expire on the server."""


class ProcessRegistrant(Registrant):
    """A registrant in its own process (``python -m discovery.testing._registrant``)."""

    def __init__(self, url: str, service: str, ids: Sequence[str], ttl: float, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "discovery.testing._registrant", url, service, str(ttl), *ids],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.process.kill()
            _, err = self.process.communicate(timeout=timeout)
            raise AssertionError(f"registrant failed to start: {line!r} {err[-2000:]}")

    def kill(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=30)


class InProcessRegistrant(Registrant):
    """A registrant in this process whose backend can play a crash (``Backend.abandon``)."""

    def __init__(self, url: str, service: str, ids: Sequence[str], ttl: float) -> None:
        self.registry = connect(url)
        for instance_id in ids:
            self.registry.register(service, instance_id, ttl=ttl)

    def kill(self) -> None:
        self.registry.backend.abandon()


class RegistryFixtures:
    """Base class of the fixtures every suite needs; subclass it per backend.

    Class attributes:
        label: the name results are filed under (``etcd``, ``zookeeper x3``...).
        load: how many instances the fault scenarios write under load.
        gap_reason: the gap a lost history produces (``compacted``, ``history-window``).
        ttl: the short ttl scenarios register with, in seconds.
        timeout: the generous deadline for waiting on a condition, in seconds.
        in_process_registrant: True when a registrant must live in this
            process (a memory store is not shared between processes).
    """

    label: ClassVar[str] = "unnamed"
    ttl: ClassVar[float] = 1.0
    timeout: ClassVar[float] = 60.0
    in_process_registrant: ClassVar[bool] = False
    load: ClassVar[int] = 300
    gap_reason: ClassVar[str] = ""

    def make_url(self) -> str:
        """A registry URL with a fresh root, unique to the calling test. Required."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_url()")

    def lose_session(self, registry: Registry) -> None:
        """Make the registry's sessions end behind its back; override with the server-side fault.

        The default ends each session through the backend (its instances are
        deleted) and reports it lost, which any live registry can play.
        Backend fixtures override it with the real thing: a lease revoked on
        the server, a ZooKeeper session expired.
        """
        for session in registry.sessions:
            session.close()
            session.mark_lost()

    def restart_server(self) -> None:
        """Kill the server (every member) with SIGKILL and start it again on the same data (ServerRestartSuite)."""
        raise NotImplementedError(f"{type(self).__name__} must implement restart_server()")

    def kill_leader(self) -> None:
        """Kill the cluster's current leader with SIGKILL; the fixtures restart it afterwards (LeaderKillSuite)."""
        raise NotImplementedError(f"{type(self).__name__} must implement kill_leader()")

    def lose_history(self, registry: Registry, since: int) -> None:
        """Make the changes after ``since`` unavailable from the server's history (HistoryGapSuite)."""
        raise NotImplementedError(f"{type(self).__name__} must implement lose_history()")

    def connection_lost(self, registry: Registry) -> contextlib.AbstractContextManager[None]:
        """A context manager inside which ``registry``'s connection is down, shorter than its session."""
        raise NotImplementedError(f"{type(self).__name__} must implement connection_lost()")

    @staticmethod
    def unique_root() -> str:
        """A fresh root path segment for one test."""
        return f"/t-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def parity(self) -> dict[str, Any]:
        """Numbers for the parity table (expected, seen, resyncs); the plugin files them with the outcome."""
        return {"backend": self.label}

    @pytest.fixture
    def url(self) -> str:
        """A URL with a fresh root for this test."""
        return self.make_url()

    @pytest.fixture
    def registry(self, url: str) -> Iterator[Registry]:
        """A registry on the fresh root, closed after the test."""
        registry = connect(url)
        yield registry
        registry.close()

    @pytest.fixture
    def other(self, url: str) -> Iterator[Registry]:
        """A second, independent client on the same root (another process's view)."""
        registry = connect(url)
        yield registry
        registry.close()

    def start_registrant(self, url: str, service: str, ids: Sequence[str], ttl: float) -> Registrant:
        """Start a registrant of ``ids`` under ``service``; kill() plays its death."""
        if self.in_process_registrant:
            return InProcessRegistrant(url, service, ids, ttl)
        return ProcessRegistrant(url, service, ids, ttl)
