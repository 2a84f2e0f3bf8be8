"""A registrant process for the conformance suite: registers instances, then waits to be killed.

``python -m discovery.testing._registrant URL SERVICE TTL ID...`` registers
every id under SERVICE with the given ttl, prints ``ready`` and blocks. The
suite kills it with SIGKILL to play "the registrant dies": nothing is
deregistered, so the instances must expire on the server.
"""

from __future__ import annotations

import sys
import threading

import discovery


def main(argv: list[str]) -> int:
    """Register, report readiness, block forever."""
    url, service, ttl, *ids = argv
    registry = discovery.connect(url)
    registrations = [registry.register(service, instance_id, ttl=float(ttl)) for instance_id in ids]
    print("ready", len(registrations), flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
