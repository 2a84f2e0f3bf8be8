"""Benchmark profiles: the sizes, rates, rounds and ttls of ``smoke``, ``default`` and ``full``.

``smoke`` proves every workload runs on every backend in well under a minute
(``make test`` runs it; its numbers mean nothing). ``default`` is what
``make bench`` runs, under 15 minutes on two cores, with the sizes the
comparison is about (2,000 registrations, a burst of 10,000, keep-alive up to
10,000 live instances, a 10,000-instance resync, lookups among 1,000
instances of one service, the dashboard in a browser at 100 and 10,000
instances, the scale steps 1,000, 3,000 and 10,000 at ttl 10 s with 1, 10
and 100 watchers over 10,000). ``full`` repeats more, adds a longer ttl and
takes the scale steps on to 30,000 and 100,000, for numbers worth quoting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Everything a run's size depends on.

    Attributes:
        name: the profile's name.
        warm_up: whether workloads run an unrecorded round first.
        register_instances: instances per registration round (split over the registrants).
        register_warmup: instances registered once per backend before the measured rounds.
        register_concurrency: how many concurrent registrants to measure.
        register_rounds: measured rounds of the registration workload.
        propagation: (rate per second or None for as fast as possible, writes) pairs.
        propagation_rounds: measured rounds of the watch-propagation workload.
        lookup_instances: instances of the one service the lookup workload looks up.
        lookup_seconds: how long each kind of lookup is timed per round.
        lookup_writes: (rate per second or None for as fast as possible, writes) of the
            lookup workload's visibility measurement.
        lookup_rounds: measured rounds of the lookup workload.
        dashboard_sizes: live instance counts the dashboard is measured at, ascending.
        dashboard_services: the services those instances are spread over, evenly.
        dashboard_repetitions: register → node up measurements per size and round.
        dashboard_rounds: measured rounds of the dashboard workload.
        burst_instances: instances registered, then abandoned, in the burst.
        burst_ttl: their ttl, in seconds.
        burst_rounds: measured rounds of the burst.
        registrant_chunk: the most instance ids handed to one registrant process.
        detection_ttls: the ttls failure detection is measured at.
        detection_repetitions: kills per ttl.
        keepalive_sizes: live instance counts the keep-alive cost is measured at, ascending.
        keepalive_ttl: the ttl of those instances.
        keepalive_periods: how many keep-alive periods (ttl / 3, when every backend refreshes)
            each keep-alive measurement lasts: whole periods, so every refresh round is counted once.
        resync_fraction: the fraction of instances changed before each resync.
        resync_rounds: measured rounds of the resync workload.
        peer_latency_samples: joins timed in the peer (tooz) workload.
        peer_pairs: quick join+leave pairs in the peer workload.
        scale_steps: the instance counts one holder process grows to, ascending, until one loses an instance.
        scale_ttl: the ttl of those instances.
        scale_hold_ttls: how long each step holds its instances, in ttls (at least 1: every instance
            must then have been kept alive through a whole ttl for the step to count as held).
        scale_fanout: the watcher counts of the fan-out, ascending (each level adds watchers to the last).
        scale_fanout_instances: the step whose population the fan-out's watchers watch.
        scale_fanout_writes: (rate per second, writes) of the fan-out's new instances at each level.
        scale_fanout_processes: the processes the fan-out's watchers are spread over.
        scale_all_at_once: run the scale workload on every backend at once (``smoke`` only, whose
            figures mean nothing: backend by backend, a backend's figures never carry another's load).
    """

    name: str
    warm_up: bool
    register_instances: int
    register_warmup: int
    register_concurrency: tuple[int, ...]
    register_rounds: int
    propagation: tuple[tuple[float | None, int], ...]
    propagation_rounds: int
    lookup_instances: int
    lookup_seconds: float
    lookup_writes: tuple[float | None, int]
    lookup_rounds: int
    dashboard_sizes: tuple[int, ...]
    dashboard_services: int
    dashboard_repetitions: int
    dashboard_rounds: int
    burst_instances: int
    burst_ttl: float
    burst_rounds: int
    registrant_chunk: int
    detection_ttls: tuple[float, ...]
    detection_repetitions: int
    keepalive_sizes: tuple[int, ...]
    keepalive_ttl: float
    keepalive_periods: int
    resync_fraction: float
    resync_rounds: int
    peer_latency_samples: int
    peer_pairs: int
    scale_steps: tuple[int, ...]
    scale_ttl: float
    scale_hold_ttls: float
    scale_fanout: tuple[int, ...]
    scale_fanout_instances: int
    scale_fanout_writes: tuple[float, int]
    scale_fanout_processes: int
    scale_all_at_once: bool = False

    @property
    def keepalive_window(self) -> float:
        """Seconds each keep-alive measurement lasts."""
        return self.keepalive_periods * self.keepalive_ttl / 3

    @property
    def scale_hold(self) -> float:
        """Seconds each scale step holds its instances."""
        return self.scale_hold_ttls * self.scale_ttl

    @property
    def population(self) -> int:
        """The live instances the keep-alive, memory and resync workloads end with."""
        return self.keepalive_sizes[-1]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        warm_up=False,
        register_instances=40,
        register_warmup=8,
        register_concurrency=(1, 8),
        register_rounds=2,
        propagation=((100.0, 20), (1000.0, 40), (None, 40)),
        propagation_rounds=1,
        lookup_instances=50,
        lookup_seconds=0.1,
        lookup_writes=(1000.0, 40),
        lookup_rounds=1,
        dashboard_sizes=(20, 200),
        dashboard_services=10,
        dashboard_repetitions=2,
        dashboard_rounds=1,
        burst_instances=100,
        burst_ttl=2.0,
        burst_rounds=1,
        registrant_chunk=50,
        detection_ttls=(2.0,),
        detection_repetitions=2,
        keepalive_sizes=(10, 50),
        keepalive_ttl=3.0,
        keepalive_periods=1,
        resync_fraction=0.1,
        resync_rounds=1,
        peer_latency_samples=3,
        peer_pairs=20,
        scale_steps=(10, 30),
        scale_ttl=2.0,
        scale_hold_ttls=1.0,
        scale_fanout=(1, 3),
        scale_fanout_instances=30,
        scale_fanout_writes=(100.0, 10),
        scale_fanout_processes=1,
        scale_all_at_once=True,
    ),
    "default": Profile(
        name="default",
        warm_up=True,
        register_instances=2000,
        register_warmup=200,
        register_concurrency=(1, 8),
        register_rounds=2,
        propagation=((100.0, 150), (1000.0, 1000), (None, 500)),
        propagation_rounds=2,
        lookup_instances=1000,
        lookup_seconds=1.0,
        lookup_writes=(1000.0, 1000),
        lookup_rounds=2,
        dashboard_sizes=(100, 10_000),
        dashboard_services=100,
        dashboard_repetitions=10,
        dashboard_rounds=1,
        burst_instances=10_000,
        burst_ttl=3.0,
        burst_rounds=1,
        registrant_chunk=2500,
        detection_ttls=(2.0, 4.0),
        detection_repetitions=5,
        keepalive_sizes=(100, 1000, 10_000),
        keepalive_ttl=10.0,
        keepalive_periods=1,
        resync_fraction=0.05,
        resync_rounds=2,
        peer_latency_samples=20,
        peer_pairs=200,
        scale_steps=(1000, 3000, 10_000),
        scale_ttl=10.0,
        scale_hold_ttls=1.0,
        scale_fanout=(1, 10, 100),
        scale_fanout_instances=10_000,
        scale_fanout_writes=(100.0, 100),
        scale_fanout_processes=4,
    ),
    "full": Profile(
        name="full",
        warm_up=True,
        register_instances=5000,
        register_warmup=500,
        register_concurrency=(1, 8),
        register_rounds=5,
        propagation=((100.0, 1000), (1000.0, 5000), (None, 5000)),
        propagation_rounds=3,
        lookup_instances=1000,
        lookup_seconds=3.0,
        lookup_writes=(1000.0, 5000),
        lookup_rounds=3,
        dashboard_sizes=(100, 10_000),
        dashboard_services=100,
        dashboard_repetitions=20,
        dashboard_rounds=3,
        burst_instances=10_000,
        burst_ttl=3.0,
        burst_rounds=3,
        registrant_chunk=2500,
        detection_ttls=(2.0, 5.0, 10.0),
        detection_repetitions=5,
        keepalive_sizes=(100, 1000, 10_000),
        keepalive_ttl=10.0,
        keepalive_periods=3,
        resync_fraction=0.05,
        resync_rounds=5,
        peer_latency_samples=50,
        peer_pairs=200,
        scale_steps=(1000, 3000, 10_000, 30_000, 100_000),
        scale_ttl=10.0,
        scale_hold_ttls=2.0,
        scale_fanout=(1, 10, 100),
        scale_fanout_instances=10_000,
        scale_fanout_writes=(100.0, 300),
        scale_fanout_processes=4,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        KeyError: no such profile.
    """
    return PROFILES[name]
