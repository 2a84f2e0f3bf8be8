"""The detached process that keeps ``discovery servers up``'s servers running after the command returns.

``python -m discovery.cli._supervisor --state-dir DIR [--etcd] [--zookeeper]
[--members N]`` runs in a session of its own (``servers up`` starts it with
``start_new_session=True``), starts the clusters through
:mod:`discovery.servers` from its main thread (so the servers get a parent
death signal tied to it), writes ``servers.json`` in the state directory, then
waits for SIGTERM (``servers down``), SIGINT or SIGHUP and stops them cleanly.
If it is killed outright, the parent death signal still takes the servers
down with it. Its stdout and stderr are the state directory's ``supervisor.log``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from discovery.cli._state import (
    DATA_DIR,
    FAILED,
    READY,
    SCHEMES,
    STARTING,
    ClusterState,
    MemberState,
    ServersState,
    clear_state,
    write_state,
)
from discovery.errors import DiscoveryError
from discovery.servers import EtcdCluster, ZooKeeperCluster

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_ROOT = "/services"


class _Stop(BaseException):
    """Raised by the signal handler in the main thread: stop the servers and exit."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor[{os.getpid()}]: {message}", flush=True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m discovery.cli._supervisor", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--etcd", action="store_true", help="start etcd (v3 and v2 API)")
    parser.add_argument("--zookeeper", action="store_true", help="start ZooKeeper")
    parser.add_argument("--members", type=int, default=1, help="members per cluster")
    return parser.parse_args(argv)


def _make(kind: str, members: int, base_dir: Path) -> EtcdCluster | ZooKeeperCluster:
    if kind == "etcd":
        return EtcdCluster(members=members, base_dir=base_dir)
    return ZooKeeperCluster(members=members, base_dir=base_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the servers, publish their URLs, wait for a stop signal, stop them.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 after a clean stop, 1 when a server failed to start.
    """
    args = _parse(argv)
    state_dir: Path = args.state_dir.resolve()
    kinds = [kind for kind in ("etcd", "zookeeper") if getattr(args, kind)] or ["etcd", "zookeeper"]
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    state = ServersState(status=STARTING, supervisor_pid=os.getpid(), kinds=kinds, members=args.members)
    clusters: list[EtcdCluster | ZooKeeperCluster] = []
    code = 0
    try:
        write_state(state_dir, state)
        for kind in kinds:
            base_dir = state_dir / DATA_DIR / kind
            shutil.rmtree(base_dir, ignore_errors=True)
            _log(f"starting {kind} ({args.members} member{'s' if args.members > 1 else ''}) in {base_dir}")
            cluster = _make(kind, args.members, base_dir)
            clusters.append(cluster)
            cluster.start()
            members = [MemberState(m.name, m.pid, m.client_port) for m in cluster.members]
            state.clusters.append(ClusterState(kind, cluster.version(), members))
            for scheme in SCHEMES[kind]:
                state.urls[scheme] = cluster.url(scheme, _ROOT)
            _log(f"{kind} ready: {cluster.hosts} (pids {', '.join(str(m.pid) for m in members)})")
        state.status = READY
        write_state(state_dir, state)
        _log("ready; waiting for SIGTERM")
        while True:
            time.sleep(3600)
    except _Stop as stop:
        _log(f"{stop} received: stopping")
    except (DiscoveryError, OSError) as exc:
        code = 1
        _log(f"failed: {exc}")
        state.status = FAILED
        state.error = str(exc)
        write_state(state_dir, state)
    finally:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        for cluster in reversed(clusters):
            cluster.stop()
        if code == 0:
            clear_state(state_dir)
        _log(f"stopped (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
