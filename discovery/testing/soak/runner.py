"""The soak run: 3-member clusters, random traffic, random faults, recorded histories, the checker's verdict.

:func:`run_soak` starts an etcd cluster (driven through ``etcd://`` and
``etcd2://``) and a ZooKeeper ensemble from :mod:`discovery.servers`, and
gives each backend one phase of the run's duration in turn. A phase opens the
consumers (:mod:`.consumers`), starts writer and registrant processes
(:mod:`.traffic`), kills registrants at random so their instances expire,
plays the seeded fault schedule (:mod:`.schedule`), then stops the traffic,
waits until every consumer equals the store, and hands the recorded
:class:`~discovery.testing.history.History` to the checker. The result of a
phase is a :class:`PhaseResult`; :mod:`.report` writes them out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from discovery import Registry, connect
from discovery.capabilities import Capability
from discovery.models import Event, Notice, NoticeKind
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.servers._process import dying_with_parent
from discovery.testing.history import Anomaly, History, Registrant, check_history
from discovery.testing.proxy import LoopbackProxy, proxied
from discovery.testing.soak.consumers import Consumer, consumers_for, converge
from discovery.testing.soak.recording import write_recording
from discovery.testing.soak.records import alive_at, records_in, writes_in
from discovery.testing.soak.schedule import FaultKind, FaultPlayer, plan

__all__ = ["BACKENDS", "PhaseResult", "SoakConfig", "run_phase", "run_soak"]

_log = logging.getLogger(__name__)

BACKENDS = ("etcd", "etcd2", "zookeeper")
"""The backends a soak drives, each through its own URL scheme."""

_PREFIX = "soak"
_CONVERGE_SECONDS = 90.0
_ETCD2_BURST = 500
"""The largest expiry burst on etcd2: 150 refreshes/s at ttl 10 s, beside the soak's other traffic."""


@dataclass(frozen=True)
class SoakConfig:
    """What a soak run does.

    Attributes:
        duration: seconds of traffic and faults in all, shared evenly by the backends.
        seed: the seed of every random choice (printed at the start; ``--seed`` replays).
        backends: which backends, from :data:`BACKENDS`.
        out: where ``soak.json``, ``soak.md`` and the raw logs go.
        writers: writer processes per backend.
        registrants: registrant processes alive at a time.
        registrant_instances: instances per registrant.
        ttl: the ttl (ZooKeeper: session timeout) of the traffic's instances.
        rate: writes per second per writer.
        burst: instances in one expiry burst.
        fault_spacing: seconds between faults, drawn uniformly from this range.
        kill_spacing: seconds between registrant kills, drawn uniformly from this range.
    """

    duration: float
    seed: int
    backends: tuple[str, ...] = BACKENDS
    out: Path = Path("soak-report")
    writers: int = 3
    registrants: int = 3
    registrant_instances: int = 5
    ttl: float = 2.0
    rate: float = 15.0
    burst: int = 2000
    fault_spacing: tuple[float, float] = (3.0, 6.0)
    kill_spacing: tuple[float, float] = (2.0, 5.0)


@dataclass
class PhaseResult:
    """One backend's soak.

    Attributes:
        backend: the backend.
        seconds: how long its traffic ran.
        operations: acknowledged writes.
        events: events the consumers took, all consumers together.
        faults: faults played, by kind (registrant kills as ``registrant-kill``).
        resyncs: resyncs the consumers saw, by reason.
        anomalies: what the checker found.
        fault_log: each fault played: kind, start, end, what it did.
    """

    backend: str
    seconds: float
    operations: int = 0
    events: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    resyncs: Counter[str] = field(default_factory=Counter)
    anomalies: list[Anomaly] = field(default_factory=list)
    fault_log: list[dict[str, object]] = field(default_factory=list)


class _Process:
    """One traffic process and its log."""

    def __init__(self, role: str, name: str, url: str, log: Path, arguments: list[str]) -> None:
        self.name = name
        self.log = log
        self.killed_at: float | None = None
        self.ttl = 0.0
        stderr = log.with_suffix(".stderr")
        command = [sys.executable, "-m", "discovery.testing.soak.traffic", role, "--url", url, "--name", name]
        with open(stderr, "wb") as err:
            self.popen = subprocess.Popen(
                dying_with_parent([*command, "--log", str(log), *arguments]), stdout=subprocess.DEVNULL, stderr=err
            )

    def ready(self) -> bool:
        return any(record.get("ready") for record in records_in(_text_lines(self.log)))

    def alive(self) -> bool:
        return self.popen.poll() is None and self.killed_at is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.killed_at = time.time()
            self.popen.kill()
        self.popen.wait()

    def terminate(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def _text_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {timeout:g} s")
        time.sleep(0.1)


class _Phase:
    """One backend's run: its traffic processes, consumers and faults."""

    def __init__(
        self, backend: str, url: str, cluster: EtcdCluster | ZooKeeperCluster, config: SoakConfig, seconds: float
    ) -> None:
        self.backend = backend
        self.url = url
        self.cluster = cluster
        self.config = config
        self.seconds = seconds
        self.rng = random.Random(f"{config.seed}-{backend}")
        self.dir = config.out / backend
        if self.dir.exists():
            shutil.rmtree(self.dir)  # logs are appended to: an earlier run's would be read as this one's
        self.dir.mkdir(parents=True)
        self.processes: list[_Process] = []
        self.registrants: list[_Process] = []
        self.result = PhaseResult(backend, seconds)
        self.serial = 0
        self.fault_windows: list[tuple[float, float]] = []

    def _spawn(self, role: str, arguments: list[str]) -> _Process:
        self.serial += 1
        name = f"{role[0]}{self.serial}"
        process = _Process(
            role, name, self.url, self.dir / f"{name}.jsonl", [*arguments, "--service", f"{_PREFIX}/{name}"]
        )
        self.processes.append(process)
        return process

    def spawn_registrant(self, count: int, ttl: float) -> _Process:
        process = self._spawn("registrant", ["--count", str(count), "--ttl", f"{ttl:g}"])
        process.ttl = ttl
        self.registrants.append(process)
        return process

    def lose_session(self) -> str | None:
        live = [p for p in self.registrants if p.alive() and p.ready()]
        if not live:
            return None
        chosen = self.rng.choice(live)
        chosen.popen.send_signal(signal.SIGUSR1)
        return chosen.name

    def burst(self) -> int:
        ttl = max(self.config.ttl, 10.0)
        count = self.config.burst
        if self.backend == "etcd2":
            # v2's TTL emulation spends a write per key per third of the ttl, on the same
            # server as every other etcd2 client of the soak: a burst within what it sustains.
            count = min(count, _ETCD2_BURST)
        process = self.spawn_registrant(count, ttl)
        _wait(process.ready, 120.0, f"the burst registrant {process.name} registering {count} instances")
        process.kill()
        return count

    def kill_registrant(self) -> None:
        live = [p for p in self.registrants if p.alive() and p.ready()]
        if live:
            self.rng.choice(live).kill()
            self.result.faults["registrant-kill"] += 1
        self.spawn_registrant(self.config.registrant_instances, self.config.ttl)


def _fault_kinds(backend: str) -> list[FaultKind]:
    kinds = [
        FaultKind.LEADER_KILL,
        FaultKind.PAUSE,
        FaultKind.TCP_CUT,
        FaultKind.SESSION_EXPIRY,
        FaultKind.EXPIRY_BURST,
    ]
    if backend == "etcd":
        kinds.append(FaultKind.COMPACTION)
    return kinds


def run_phase(backend: str, cluster: EtcdCluster | ZooKeeperCluster, config: SoakConfig, seconds: float) -> PhaseResult:
    """Soak one backend on a started cluster for ``seconds``, check its history, return the result."""
    root = f"/soak-{backend}-{config.seed}-{int(time.time())}"
    query = f"?session_timeout={config.ttl:g}" if backend == "zookeeper" else ""
    url = cluster.url(backend, root) + query
    with proxied(url) as (through, proxies), connect(url) as admin:
        phase = _Phase(backend, url, cluster, config, seconds)
        capabilities = admin.capabilities
        consumers = consumers_for(lambda: connect(through), _PREFIX, capabilities)
        try:
            return _soak(phase, admin, consumers, proxies, capabilities)
        finally:
            for process in phase.processes:
                process.kill()


def _soak(
    phase: _Phase,
    admin: Registry,
    consumers: list[Consumer],
    proxies: list[LoopbackProxy],
    capabilities: frozenset[Capability],
) -> PhaseResult:
    config = phase.config
    result = phase.result
    for consumer in consumers:
        consumer.start()
    for n in range(config.writers):
        phase._spawn(
            "writer",
            ["--seed", str(config.seed * 100 + n), "--rate", f"{config.rate:g}", "--ttl", f"{config.ttl:g}"],
        )
    for _ in range(config.registrants):
        phase.spawn_registrant(config.registrant_instances, config.ttl)
    player = FaultPlayer(phase.cluster, proxies, phase.lose_session, phase.burst)
    schedule = plan(phase.rng, phase.seconds, _fault_kinds(phase.backend), spacing=config.fault_spacing)
    began = time.monotonic()
    next_kill = began + phase.rng.uniform(*config.kill_spacing)
    for fault in [*schedule, None]:
        due = began + (fault.at if fault is not None else phase.seconds)
        while time.monotonic() < due:
            if time.monotonic() >= next_kill:
                phase.kill_registrant()
                next_kill = time.monotonic() + phase.rng.uniform(*config.kill_spacing)
            time.sleep(min(0.1, max(0.0, due - time.monotonic())))
        if fault is None:
            break
        start, end, detail = player.play(fault)
        _log.info("soak %s: %s: %s", phase.backend, fault.kind.value, detail)
        phase.fault_windows.append((start, end))
        result.faults[fault.kind.value] += 1
        result.fault_log.append({"kind": fault.kind.value, "start": start, "end": end, "detail": detail})
    ended_at = time.time()
    for process in phase.processes:
        if process.alive() and process not in phase.registrants:
            process.terminate()
    killed = [p.name for p in phase.registrants if p.killed_at is not None]
    store = converge(admin, consumers, killed, _PREFIX, timeout=_CONVERGE_SECONDS)
    logs = [consumer.stop() for consumer in consumers]
    writes = [w for process in phase.processes for w in writes_in(_text_lines(process.log))]
    registrants = {
        p.name: Registrant(
            p.name,
            p.ttl,
            p.killed_at,
            alive_at(_text_lines(p.log), p.killed_at) if p.killed_at is not None else frozenset(),
        )
        for p in phase.registrants
    }
    history = History(phase.backend, capabilities, writes, logs, registrants, phase.fault_windows, store, ended_at)
    result.operations = len(writes)
    for log in logs:
        for observation in log.items:
            item = observation.item
            if isinstance(item, Event):
                result.events += 1
            elif isinstance(item, Notice) and item.kind is NoticeKind.RESYNC_STARTED:
                result.resyncs[item.reason or "unknown"] += 1
    result.anomalies = check_history(history, returns_from="plain")
    if result.anomalies:
        write_recording(phase.dir, logs)  # what to read to explain them
    return result


def run_soak(config: SoakConfig, *, on_phase: Callable[[PhaseResult], None] | None = None) -> list[PhaseResult]:
    """Run the soak on every configured backend, one phase each; return each phase's result."""
    config.out.mkdir(parents=True, exist_ok=True)
    share = config.duration / max(1, len(config.backends))
    results: list[PhaseResult] = []
    with contextlib.ExitStack() as stack:
        etcd: EtcdCluster | None = None
        zookeeper: ZooKeeperCluster | None = None
        for backend in config.backends:
            if backend in ("etcd", "etcd2"):
                if etcd is None:
                    etcd = stack.enter_context(EtcdCluster(3))
                cluster: EtcdCluster | ZooKeeperCluster = etcd
            else:
                if zookeeper is None:
                    zookeeper = stack.enter_context(ZooKeeperCluster(3))
                cluster = zookeeper
            result = run_phase(backend, cluster, config, share)
            results.append(result)
            if on_phase is not None:
                on_phase(result)
    return results


def environment_seed() -> int:
    """A fresh seed: from the clock and the process id."""
    return (time.time_ns() ^ os.getpid()) % 1_000_000
