"""The soak's faults: a random schedule from a fixed seed, and how each fault is played on a local cluster.

Every fault a deployment can suffer is one :class:`FaultKind`; which kinds a
backend gets follows from what it is (compaction only where etcd v3 keeps a
compactable history). :func:`plan` draws the schedule from the seed alone, so
a failing run replays with ``--seed``. :class:`FaultPlayer` plays each one
on the real servers and processes and records the window in which it lasted:
a leader killed with SIGKILL and started again, a member paused with SIGSTOP
and resumed, the consumers' TCP connections cut by the loopback proxy, etcd
compacted at its current revision, a registrant's session lost (ZooKeeper:
expired by the server), and a burst of expiries (a registrant of many
instances killed at once).
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.proxy import LoopbackProxy, blocked

__all__ = ["Fault", "FaultKind", "FaultPlayer", "plan"]


class FaultKind(enum.Enum):
    """One kind of fault the soak plays."""

    LEADER_KILL = "leader-kill"
    PAUSE = "member-pause"
    TCP_CUT = "tcp-cut"
    COMPACTION = "compaction"
    SESSION_EXPIRY = "session-expiry"
    EXPIRY_BURST = "expiry-burst"


@dataclass(frozen=True)
class Fault:
    """One fault of the schedule.

    Attributes:
        at: seconds after the phase began.
        kind: what.
        hold: how long it lasts, for the kinds that last (seconds).
    """

    at: float
    kind: FaultKind
    hold: float


def plan(
    rng: random.Random, duration: float, kinds: Sequence[FaultKind], *, spacing: tuple[float, float]
) -> list[Fault]:
    """A fault schedule over ``duration`` seconds: one every ``spacing`` seconds (uniform), each kind drawn in turn.

    Kinds are dealt from a shuffled deck, so every kind is played once before any is played twice.
    """
    faults: list[Fault] = []
    deck: list[FaultKind] = []
    at = rng.uniform(*spacing) / 2
    while at < duration and kinds:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        faults.append(Fault(at, deck.pop(), rng.uniform(0.5, 2.5)))
        at += rng.uniform(*spacing)
    return faults


@dataclass
class FaultPlayer:
    """Plays faults on one deployment.

    Attributes:
        cluster: the servers.
        proxies: the proxies in front of the consumers' connections.
        lose_session: makes one live registrant lose its session; returns its name, or None if none was live.
        burst: starts a registrant of many instances, waits until they stand, kills it; returns how many.
    """

    cluster: EtcdCluster | ZooKeeperCluster
    proxies: list[LoopbackProxy]
    lose_session: Callable[[], str | None]
    burst: Callable[[], int]

    def play(self, fault: Fault) -> tuple[float, float, str]:
        """Play ``fault``; returns its window ``(start, end)`` in wall-clock time and what it did."""
        start = time.time()
        detail = self._play(fault)
        return start, time.time(), detail

    def _play(self, fault: Fault) -> str:
        kind = fault.kind
        if kind is FaultKind.LEADER_KILL:
            leader = self.cluster.leader()
            leader.kill()
            time.sleep(fault.hold)
            leader.restart()
            self.cluster.wait_healthy()
            return f"killed {leader.name}, restarted after {fault.hold:.1f} s"
        if kind is FaultKind.PAUSE:
            member = self.cluster.members[int(fault.hold * 1000) % len(self.cluster.members)]
            member.pause()
            try:
                time.sleep(fault.hold)
            finally:
                member.resume()
            self.cluster.wait_healthy()
            return f"paused {member.name} for {fault.hold:.1f} s"
        if kind is FaultKind.TCP_CUT:
            with blocked(self.proxies):
                time.sleep(fault.hold)
            return f"cut the consumers' connections for {fault.hold:.1f} s"
        if kind is FaultKind.COMPACTION:
            assert isinstance(self.cluster, EtcdCluster)
            revision = self.cluster.compact()
            return f"compacted at revision {revision}"
        if kind is FaultKind.SESSION_EXPIRY:
            name = self.lose_session()
            return f"{name} lost its session" if name else "no live registrant"
        count = self.burst()
        return f"{count} instances expired at once"
