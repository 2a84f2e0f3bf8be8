"""A population holder process: registers instances on command and keeps them alive, for the benchmark to measure.

``python -m discovery_bench.harness.holder URL SERVICE TTL [SERVICES]`` connects,
prints ``connected``, then reads commands on standard input, one a line:

- ``grow N``: register instances ``p0``..``p<N-1>`` not yet registered; prints ``ready N``.
  With SERVICES above 1 they are spread round-robin over ``SERVICE/s0``..``SERVICE/s<SERVICES-1>``
  (:func:`service_of`), so every step of the growth keeps the services even;
- ``update K TAG``: set ``meta={"v": TAG}`` on the first K instances; prints ``updated K``;
- ``status``: prints ``status ALIVE SESSIONS REREGISTRATIONS`` (registrations alive, sessions held,
  registrations written again since the start after the server dropped them: expiries);
- ``watch``: open a watch on SERVICE; prints ``watching N`` (instances in its snapshot);
- ``quit`` or end of input: deregister everything and exit.

All instances share this one process and its one session (lease), so what
the server receives while the holder idles is exactly the keep-alive traffic
of N instances, and the process's CPU and memory are the client's cost.
"""

from __future__ import annotations

import sys

import discovery


def service_of(service: str, services: int, index: int) -> str:
    """The service instance ``p<index>`` belongs to: ``service`` itself, or one of ``services`` below it in turn."""
    return service if services <= 1 else f"{service}/s{index % services}"


def main(argv: list[str]) -> int:
    """Serve commands until ``quit`` or end of input."""
    url, service, ttl_text, *spread = argv
    ttl = float(ttl_text)
    services = int(spread[0]) if spread else 1
    registry = discovery.connect(url)
    registrations: list[discovery.Registration] = []
    watches: list[discovery.Watch] = []
    print("connected", flush=True)
    try:
        for line in sys.stdin:
            command, *args = line.split() or [""]
            if command == "grow":
                for index in range(len(registrations), int(args[0])):
                    home = service_of(service, services, index)
                    registrations.append(registry.register(home, f"p{index}", address="127.0.0.1", ttl=ttl))
                print("ready", len(registrations), flush=True)
            elif command == "update":
                count = int(args[0])
                for registration in registrations[:count]:
                    registration.update(meta={"v": args[1]})
                print("updated", count, flush=True)
            elif command == "status":
                alive = sum(1 for registration in registrations if registration.alive)
                rewritten = registry.registration_stats().reregistrations
                print("status", alive, len(registry.sessions), rewritten, flush=True)
            elif command == "watch":
                watch = registry.watch(service)
                watches.append(watch)
                print("watching", len(watch.snapshot.instances), flush=True)
            elif command == "quit":
                break
    finally:
        registry.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
