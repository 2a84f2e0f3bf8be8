"""Prometheus metrics of a registry, opt-in: ``metrics = discovery.metrics.enable(reg)``.

:func:`enable` registers one custom collector for a :class:`~discovery.Registry`
on a Prometheus collector registry (a dedicated one unless told otherwise). It
follows the pull model: nothing is mirrored or pushed; at each scrape the
collector reads the plain counters the core keeps anyway — each open watch's
:meth:`~discovery.Watch.stats`, :meth:`~discovery.Registry.registration_stats`
(registrations, re-registrations, the sessions' keep-alives) and, for the
per-service metrics, a :class:`~discovery.cache.ServiceCache`'s status tree
computed from memory. So the core never imports ``prometheus_client`` (an
optional dependency: the ``metrics`` extra), a process that does not enable
metrics pays nothing, and a scrape never asks the server anything.

Every metric is declared once, in :data:`METRICS`, with bounded labels:
watch prefixes, services, event kinds, resync reasons, states — never an
instance id. :func:`metrics_table` renders the catalogue for the docs.
Series of a watch (label ``prefix``, ``/`` for a watch on everything) sum
the open watches on that prefix; when one closes, its counts leave the sum,
which Prometheus reads as a counter reset. Resync reasons are the backends'
(``compacted``, ``history-window``, ``connection-loss``, ``no-resume``...),
the engine's (``overflow``, ``inconsistent-stream``) and whatever the
application passes to ``request_resync``. Keep-alive counters have samples
only where the backend counts its sessions' keep-alives (memory: a lease
keep-alive; etcd v3: a lease keep-alive request; etcd v2: one TTL refresh
per key) and once a session was opened; ZooKeeper's session is kept by
kazoo's own pings, which the backend never sees, so it has none.

Example::

    reg = discovery.connect(url)
    metrics = discovery.metrics.enable(reg, services="")
    body, content_type = metrics.exposition()  # what GET /metrics answers
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("discovery.metrics needs prometheus-client: pip install 'discovery-registry[metrics]'") from exc

from discovery._watch import LAG_BUCKETS, WatchStats
from discovery.cache import ServiceCache
from discovery.models import EventKind, Health
from discovery.registry import Registry

__all__ = [
    "LAG_BUCKETS",
    "METRICS",
    "MetricSpec",
    "ROOT_PREFIX",
    "RegistryMetrics",
    "WATCH_STATES",
    "enable",
    "metrics_table",
]

WATCH_STATES: tuple[str, ...] = ("connected", "disconnected", "resyncing", "broken")
"""The values of the ``state`` label of ``discovery_watch_state`` (see :class:`~discovery._watch.WatchStats`)."""

ROOT_PREFIX = "/"
"""The ``prefix`` label of a watch on everything (an empty label value would be no label at all)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric's declaration.

    Attributes:
        name: the metric family's name; a counter's samples add ``_total``.
        kind: ``counter``, ``gauge`` or ``histogram``.
        labels: its label names, each with a bounded set of values.
        help: the HELP text: what it counts, in which unit.
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str

    @property
    def sample_name(self) -> str:
        """The name its samples carry (``..._total`` for a counter)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


REGISTRY_INFO = MetricSpec("discovery_registry_info", "gauge", ("backend",), "Always 1; the registry's backend.")
WATCH_EVENTS = MetricSpec(
    "discovery_watch_events",
    "counter",
    ("prefix", "kind"),
    "Events the open watches on the prefix emitted for their consumers (buffered for them), by kind "
    "(added, updated, removed), resync events included.",
)
WATCH_RESYNCS = MetricSpec(
    "discovery_watch_resyncs",
    "counter",
    ("prefix", "reason"),
    "Resyncs (re-lists that close a gap) of the open watches on the prefix, by reason.",
)
WATCH_STATE = MetricSpec(
    "discovery_watch_state",
    "gauge",
    ("prefix", "state"),
    "Open watches on the prefix in each state: connected, disconnected (an outage under way), resyncing, "
    "broken (gave up; the consumer got WatchBroken).",
)
WATCH_BUFFERED = MetricSpec(
    "discovery_watch_buffered_items",
    "gauge",
    ("prefix",),
    "Events and notices the open watches on the prefix have buffered and their consumers not yet taken "
    "(how far the consumer is behind).",
)
WATCH_LAG = MetricSpec(
    "discovery_watch_delivery_lag_seconds",
    "histogram",
    ("prefix",),
    "Seconds items (events and notices) waited in a watch's buffer, from the engine buffering them to the "
    "consumer taking them; measured per chunk buffered together, when its last item is taken. Not the "
    "server's propagation delay.",
)
REGISTRATIONS_ALIVE = MetricSpec(
    "discovery_registrations_alive", "gauge", (), "Registrations of this process registered on the server now."
)
REGISTRATIONS_WAITING = MetricSpec(
    "discovery_registrations_waiting",
    "gauge",
    (),
    "Registrations of this process not registered now: their session was lost and they wait to be written again.",
)
REREGISTRATIONS = MetricSpec(
    "discovery_reregistrations",
    "counter",
    (),
    "Registrations written again after the server dropped their session or lease (etcd v2: their key).",
)
KEEPALIVE_REQUESTS = MetricSpec(
    "discovery_keepalive_requests",
    "counter",
    (),
    "Keep-alive requests sent for this process's sessions: lease keep-alives (etcd v3, memory), one TTL "
    "refresh per key (etcd v2). No samples on ZooKeeper, whose client keeps the session with pings unseen.",
)
KEEPALIVE_FAILURES = MetricSpec(
    "discovery_keepalive_failures",
    "counter",
    (),
    "Keep-alive requests that did not renew: no answer, an error, or the lease or key found gone.",
)
SERVICE_INSTANCES = MetricSpec(
    "discovery_service_instances", "gauge", ("service",), "Live instances of exactly this service path."
)
SERVICE_MIN_INSTANCES = MetricSpec(
    "discovery_service_min_instances",
    "gauge",
    ("service",),
    "The defined minimum of live instances (Registry.define); no sample for an undefined service.",
)
SERVICE_HEALTH = MetricSpec(
    "discovery_service_health",
    "gauge",
    ("service", "health"),
    "1 for the service path's health (up, degraded, down; a parent shows the worst of its subtree), 0 for the others.",
)

METRICS: tuple[MetricSpec, ...] = (
    REGISTRY_INFO,
    WATCH_EVENTS,
    WATCH_RESYNCS,
    WATCH_STATE,
    WATCH_BUFFERED,
    WATCH_LAG,
    REGISTRATIONS_ALIVE,
    REGISTRATIONS_WAITING,
    REREGISTRATIONS,
    KEEPALIVE_REQUESTS,
    KEEPALIVE_FAILURES,
    SERVICE_INSTANCES,
    SERVICE_MIN_INSTANCES,
    SERVICE_HEALTH,
)
"""Every metric :func:`enable` exports, in exposition order."""


def metrics_table() -> str:
    """The catalogue of :data:`METRICS` as a Markdown table (name, type, labels, meaning), for the docs."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        rows.append(f"| `{spec.sample_name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(rows) + "\n"


def _family(spec: MetricSpec) -> Metric:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    if spec.kind == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)


@dataclass
class _PrefixTotals:
    """The stats of the open watches on one prefix, summed."""

    events: dict[EventKind, int] = field(default_factory=lambda: dict.fromkeys(EventKind, 0))
    resyncs: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WATCH_STATES, 0))
    buffered: int = 0
    lag_buckets: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    lag_seconds: float = 0.0

    def add(self, stats: WatchStats) -> None:
        for kind, count in stats.events.items():
            self.events[kind] += count
        for reason, count in stats.resyncs.items():
            self.resyncs[reason] = self.resyncs.get(reason, 0) + count
        self.states[stats.state] = self.states.get(stats.state, 0) + 1
        self.buffered += stats.buffered
        for index, count in enumerate(stats.lag_buckets):
            self.lag_buckets[index] += count
        self.lag_seconds += stats.lag_seconds


class _RegistryCollector(Collector):
    """Reads a registry's counters (and a cache's status) at each scrape."""

    def __init__(self, registry: Registry, cache: ServiceCache | None, services: str) -> None:
        self._registry = registry
        self._cache = cache
        self._services = services

    def describe(self) -> Iterable[Metric]:
        # Declared without reading anything: registering the collector checks names only.
        return [_family(spec) for spec in METRICS]

    def collect(self) -> Iterable[Metric]:
        families = {spec.name: _family(spec) for spec in METRICS}
        _add(families[REGISTRY_INFO.name], [self._registry.backend.name], 1)
        self._collect_watches(families)
        self._collect_registrations(families)
        if self._cache is not None:
            self._collect_services(families, self._cache)
        return list(families.values())

    def _collect_watches(self, families: dict[str, Metric]) -> None:
        totals: dict[str, _PrefixTotals] = {}
        for watch in self._registry.watches():
            totals.setdefault(watch.prefix or ROOT_PREFIX, _PrefixTotals()).add(watch.stats())
        for prefix in sorted(totals):
            total = totals[prefix]
            for kind, count in total.events.items():
                _add(families[WATCH_EVENTS.name], [prefix, kind.value], count)
            for reason in sorted(total.resyncs):
                _add(families[WATCH_RESYNCS.name], [prefix, reason], total.resyncs[reason])
            for state, count in total.states.items():
                _add(families[WATCH_STATE.name], [prefix, state], count)
            _add(families[WATCH_BUFFERED.name], [prefix], total.buffered)
            lag = families[WATCH_LAG.name]
            assert isinstance(lag, HistogramMetricFamily)
            lag.add_metric([prefix], _cumulative(total.lag_buckets), total.lag_seconds)

    def _collect_registrations(self, families: dict[str, Metric]) -> None:
        stats = self._registry.registration_stats()
        _add(families[REGISTRATIONS_ALIVE.name], [], stats.alive)
        _add(families[REGISTRATIONS_WAITING.name], [], stats.registered - stats.alive)
        _add(families[REREGISTRATIONS.name], [], stats.reregistrations)
        if stats.keepalive_requests is not None and stats.keepalive_failures is not None:
            _add(families[KEEPALIVE_REQUESTS.name], [], stats.keepalive_requests)
            _add(families[KEEPALIVE_FAILURES.name], [], stats.keepalive_failures)

    def _collect_services(self, families: dict[str, Metric], cache: ServiceCache) -> None:
        for node in cache.status(self._services).walk():
            if not node.path:
                continue
            _add(families[SERVICE_INSTANCES.name], [node.path], node.instances)
            if node.min_instances is not None:
                _add(families[SERVICE_MIN_INSTANCES.name], [node.path], node.min_instances)
            for health in Health:
                _add(families[SERVICE_HEALTH.name], [node.path, health.value], 1 if node.health is health else 0)


def _add(family: Metric, labels: Sequence[str], value: float) -> None:
    assert isinstance(family, CounterMetricFamily | GaugeMetricFamily)
    family.add_metric(labels, value)


def _cumulative(buckets: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (``le``, cumulative count) from per-bucket counts over :data:`LAG_BUCKETS` and +Inf."""
    result: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*LAG_BUCKETS, float("inf")), buckets, strict=True):
        running += count
        result.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return result


class RegistryMetrics:
    """A registry's metrics, registered on :attr:`collector_registry` until :meth:`close`. Made by :func:`enable`.

    A context manager. Attributes:
        registry: the registry measured.
        collector_registry: where the collector is registered.
        cache: the cache the per-service metrics come from, or None without them.
    """

    def __init__(
        self,
        registry: Registry,
        collector_registry: CollectorRegistry,
        collector: _RegistryCollector,
        cache: ServiceCache | None,
        owns_cache: bool,
    ) -> None:
        self.registry = registry
        self.collector_registry = collector_registry
        self.cache = cache
        self._collector = collector
        self._owns_cache = owns_cache
        self._closed = False

    def exposition(self) -> tuple[bytes, str]:
        """Everything on :attr:`collector_registry`, in Prometheus's text format: ``(body, content_type)``."""
        return generate_latest(self.collector_registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Unregister the collector and close the cache :func:`enable` opened (not one it was given). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.collector_registry.unregister(self._collector)
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    def __enter__(self) -> RegistryMetrics:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def enable(
    registry: Registry,
    *,
    services: str | None = "",
    cache: ServiceCache | None = None,
    collector_registry: CollectorRegistry | None = None,
) -> RegistryMetrics:
    """Export ``registry``'s metrics (see :data:`METRICS`) through a collector read at scrape time.

    Args:
        registry: the registry to measure: its watches (those of its caches
            included), registrations and sessions.
        services: the service prefix of the per-service metrics (``""``:
            every service); None for no per-service metrics.
        cache: where the per-service metrics come from, a cache whose prefix
            covers ``services``; by default :func:`enable` opens
            ``registry.cache(services)`` (one more watch) and
            :meth:`RegistryMetrics.close` closes it. Ignored when
            ``services`` is None.
        collector_registry: where to register, e.g. ``prometheus_client.REGISTRY``
            to join the process's other metrics; by default a new one of
            these metrics alone.

    Returns:
        The metrics: :meth:`~RegistryMetrics.exposition` answers a scrape.

    Raises:
        InvalidName: a bad ``services`` prefix.
        InvalidValue: ``services`` lies outside the given cache's prefix.
        BackendError: the cache's watch could not be opened.
        RegistryClosed: the registry is closed.
        ValueError: ``collector_registry`` already holds these metrics
            (another registry's: one registry per collector registry).
    """
    owns_cache = False
    if services is None:
        cache = None
    elif cache is None:
        cache = registry.cache(services)
        owns_cache = True
    try:
        if cache is not None:
            cache.status(services or "")  # refuses a prefix the cache cannot answer for, now rather than per scrape
        target = CollectorRegistry() if collector_registry is None else collector_registry
        collector = _RegistryCollector(registry, cache, services or "")
        target.register(collector)
    except BaseException:
        if owns_cache and cache is not None:
            cache.close()
        raise
    return RegistryMetrics(registry, target, collector, cache, owns_cache)
