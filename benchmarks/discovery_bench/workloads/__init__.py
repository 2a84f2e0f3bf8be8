"""The workloads: each measurement, one module each, run by the harness on every backend in interleaved rounds.

:mod:`~discovery_bench.workloads.base` defines what a workload is; then
registration throughput (:mod:`~discovery_bench.workloads.register`), watch
propagation (:mod:`~discovery_bench.workloads.propagation`), lookups from
the registry, a cache and a provider (:mod:`~discovery_bench.workloads.lookup`), the
dashboard in a browser (:mod:`~discovery_bench.workloads.dashboard`), burst
completeness (:mod:`~discovery_bench.workloads.burst`), failure detection
(:mod:`~discovery_bench.workloads.detection`), keep-alive cost
(:mod:`~discovery_bench.workloads.keepalive`, which also measures client
memory and resync cost on its population: :mod:`~discovery_bench.workloads.memory`,
:mod:`~discovery_bench.workloads.resync`,
:mod:`~discovery_bench.workloads.population`), how far one process goes
(:mod:`~discovery_bench.workloads.scale`: the knee of each server backend,
the cost per step, watcher fan-out) and, with ``--peers``, tooz peer
membership (:mod:`~discovery_bench.workloads.peers`). :func:`workloads_for`
lists a run's workloads in order, all of them or those asked for.
"""

from __future__ import annotations

from discovery_bench.workloads.base import Context, Workload
from discovery_bench.workloads.burst import BurstWorkload
from discovery_bench.workloads.dashboard import DashboardWorkload
from discovery_bench.workloads.detection import DetectionWorkload
from discovery_bench.workloads.keepalive import KeepaliveWorkload
from discovery_bench.workloads.lookup import LookupWorkload
from discovery_bench.workloads.propagation import PropagationWorkload
from discovery_bench.workloads.register import RegisterWorkload
from discovery_bench.workloads.scale import ScaleWorkload

__all__ = ["WORKLOAD_NAMES", "Context", "Workload", "workloads_for"]

_KINDS: tuple[type[Workload], ...] = (
    RegisterWorkload,
    PropagationWorkload,
    LookupWorkload,
    DashboardWorkload,
    BurstWorkload,
    DetectionWorkload,
    KeepaliveWorkload,
    ScaleWorkload,
)

WORKLOAD_NAMES = (*(kind.name for kind in _KINDS), "peers")
"""Every workload's name, in run order (``peers`` only runs when asked for)."""


def workloads_for(ctx: Context, peers: bool, only: frozenset[str] | None = None) -> list[Workload]:
    """The workloads of a run, in order (keep-alive also files the client-memory and resync sections).

    Args:
        ctx: what the run's workloads share.
        peers: add the tooz peer-membership workload (imported only then: it needs tooz).
        only: run just these workloads (names of :data:`WORKLOAD_NAMES`); None for all.
    """
    kinds = [kind for kind in _KINDS if only is None or kind.name in only]
    if peers or (only is not None and "peers" in only):
        from discovery_bench.workloads.peers import PeersWorkload

        kinds.append(PeersWorkload)
    return [kind(ctx) for kind in kinds]
