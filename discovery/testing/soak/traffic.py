"""The soak's traffic: writer and registrant processes that record every write the backend acknowledged.

Run as ``python -m discovery.testing.soak.traffic writer|registrant ...`` by
the soak runner, one process each, so that a registrant can be killed with
SIGKILL like a crashed service and its instances expire on the server. Each
process appends one JSON line per acknowledged write to its log
(``{"client", "kind", "key", "revision", "at"}``, flushed at once so a
SIGKILL loses nothing acknowledged) and a ``{"ready": true}`` line once its
first registrations stand. A **writer** registers fresh ids, updates and
deregisters them at random, at a bounded rate, from its own seed. A
**registrant** registers a fixed set of instances on one session (``register_many``) and keeps
them alive until it is killed; SIGUSR1 makes it lose its session the
backend's way (ZooKeeper: the server expires it; etcd: the lease ends), and
the registry must put its instances back. SIGTERM ends either cleanly.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from types import FrameType

from discovery import BackendError, DiscoveryError, Instance, Registration, Registry, connect
from discovery.testing.history import WriteKind
from discovery.testing.soak.records import WriteLog

_BATCH = 100
"""Instances a registrant registers per ``register_many`` call."""


def _stop_on_term() -> threading.Event:
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    return stop


def run_writer(
    registry: Registry,
    log: WriteLog,
    service: str,
    *,
    seed: int,
    rate: float,
    ttl: float,
    keys: int,
    stop: threading.Event,
) -> None:
    """Register, update and deregister at random until ``stop`` is set; every acknowledged write is logged."""
    rng = random.Random(seed)
    live: dict[str, Registration] = {}
    serial = 0
    period = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))
        choice = rng.random()
        try:
            if not live or (len(live) < keys and choice < 0.4):
                serial += 1
                instance_id = f"i{serial}"
                registration = registry.register(
                    service, instance_id, address="127.0.0.1", port=1024 + serial % 60000, meta={"v": 0}, ttl=ttl
                )
                live[instance_id] = registration
                log.write(WriteKind.REGISTER, registration.key, registration.instance.revision)
            elif choice < 0.8:
                instance_id = rng.choice(sorted(live))
                instance = live[instance_id].update(meta={"v": serial * 1000 + rng.randrange(1000)})
                serial += 1
                log.write(WriteKind.UPDATE, f"{service}/{instance_id}", instance.revision)
            else:
                instance_id = rng.choice(sorted(live))
                registration = live[instance_id]
                registration.close()
                del live[instance_id]
                log.write(WriteKind.DEREGISTER, registration.key, None)
        except BackendError as exc:
            log.line({"error": type(exc).__name__, "at": time.time()})
        except DiscoveryError as exc:
            # An instance whose registration ended under us (its session was lost for good): forget it.
            log.line({"error": type(exc).__name__, "at": time.time()})
            live = {k: r for k, r in live.items() if not r.closed}


def lose_sessions(registry: Registry) -> None:
    """Make the registry lose its sessions the backend's way: a server-side expiry where it has one."""
    expire = getattr(registry.backend, "expire_session", None)
    if callable(expire):
        expire()
        return
    for session in registry.sessions:
        session.close()
        session.mark_lost()


def run_registrant(
    registry: Registry, log: WriteLog, service: str, *, count: int, ttl: float, stop: threading.Event
) -> None:
    """Register ``count`` instances and keep them until ``stop``; SIGUSR1 loses the session."""
    lose = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        lose.set()

    signal.signal(signal.SIGUSR1, handler)
    wanted = [Instance(service, f"i{n}", "127.0.0.1", 2000 + n % 60000) for n in range(count)]
    while wanted and not stop.is_set():
        batch, wanted = wanted[:_BATCH], wanted[_BATCH:]
        while not stop.is_set():
            try:
                made = registry.register_many(batch, ttl=ttl)
            except BackendError:
                stop.wait(0.2)
                continue
            for registration in made:
                log.write(WriteKind.REGISTER, registration.key, registration.instance.revision)
                registration.on_change(
                    lambda changed, alive: log.line({"alive": alive, "key": changed.key, "at": time.time()})
                )
            break
    log.line({"ready": True, "at": time.time()})
    while not stop.is_set():
        if lose.wait(0.2):
            lose.clear()
            try:
                lose_sessions(registry)
            except BackendError as exc:
                log.line({"error": type(exc).__name__, "at": time.time()})


def main(argv: list[str] | None = None) -> int:
    """Entry point of one traffic process."""
    parser = argparse.ArgumentParser(prog="python -m discovery.testing.soak.traffic")
    parser.add_argument("role", choices=["writer", "registrant"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args(argv)
    stop = _stop_on_term()
    with open(args.log, "a", encoding="utf-8") as stream, connect(args.url) as registry:
        log = WriteLog(stream, args.name)
        if args.role == "writer":
            run_writer(
                registry, log, args.service, seed=args.seed, rate=args.rate, ttl=args.ttl, keys=args.keys, stop=stop
            )
        else:
            run_registrant(registry, log, args.service, count=args.count, ttl=args.ttl, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
