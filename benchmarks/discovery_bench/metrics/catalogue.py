"""Every figure the benchmark reports, defined once: the catalogue the workloads, tables, plots, goals and README use.

Each constant is one :class:`~discovery_bench.metrics.Metric` (or family of
them): key, label, unit, which way is better, its report section, how a round
becomes its observations (the p99 of the round's latencies, the one value the
round measured, every repetition, a ratio of two metrics of the same round,
or a ratio the workload takes itself within the round, like register_many ÷
the raw client's best rate).
The workloads record through these constants and every reader of
``report.json`` finds its figures through them, never by spelling a key.
"""

from __future__ import annotations

from discovery_bench.metrics.definition import Metric, each, largest, measured, percentile_of, ratio_of


def rate_tag(rate: float | None) -> str:
    """The key suffix of a write rate: ``100``, ``1000`` or ``max``."""
    return "max" if rate is None else f"{rate:g}"


def rate_label(rate: float | None) -> str:
    """How a write rate reads in the report."""
    return "as fast as possible" if rate is None else f"{rate:,.0f}/s"


def ttl_tag(ttl: float) -> str:
    """The key suffix of a ttl: ``2``, ``4``, ``2.5``..."""
    return f"{ttl:g}"


def _rate(rate: float | None) -> tuple[str, str]:
    return rate_tag(rate), rate_label(rate)


def _registrants(count: int) -> tuple[str, str]:
    return str(count), "1 registrant" if count == 1 else f"{count} registrants"


def _ttl(ttl: float) -> tuple[str, str]:
    return ttl_tag(ttl), ttl_tag(ttl)


def _instances(size: int) -> tuple[str, str]:
    return str(size), f"{size:,}"


def _pairs(pairs: int) -> tuple[str, str]:
    return "", str(pairs)


def _watchers(count: int) -> tuple[str, str]:
    return str(count), "1 watcher" if count == 1 else f"{count:,} watchers"


# Registration throughput.
_REGISTERED = measured("N ÷ seconds from release to the last registration acknowledged")
REGISTRY_RATE = Metric(
    "registry_c{}", "registry, {}", "/s", "higher", "register", per_round=_REGISTERED, param=_registrants
)
RAW_RATE = Metric("raw_c{}", "raw client, {}", "/s", "higher", "register", per_round=_REGISTERED, param=_registrants)
REGISTER_RATIO = Metric(
    "ratio_c{}", "registry ÷ raw, {}", "", "higher", "register", 2, ratio_of(REGISTRY_RATE, RAW_RATE), _registrants
)
RAW_ASYNC_RATE = Metric(
    "raw_async", "raw pipelined (kazoo create_async), 1 client", "/s", "higher", "register", per_round=_REGISTERED
)
REGISTER_MANY_RATE = Metric(
    "register_many",
    "registry register_many, instances/s",
    "/s",
    "higher",
    "register",
    per_round=measured("N ÷ seconds from release to one register_many() of all N returning, 1 registrant"),
)
REGISTER_MANY_VS_RAW_BEST = Metric(
    "register_many_vs_raw_best",
    "register_many ÷ raw client's best single-op rate",
    "",
    "higher",
    "register",
    2,
    measured(
        f"{REGISTER_MANY_RATE.key} ÷ the largest raw rate of the same round "
        f"({RAW_RATE.key_at('<n>')} at every concurrency, {RAW_ASYNC_RATE.key} where measured)"
    ),
)

# Watch propagation.
_LATENCIES = "write → consumer latencies"
_DELIVERED = measured("distinct events delivered ÷ writes")
_WRITES = measured("writes ÷ seconds from the first write to the last acknowledged")
P50_MS = Metric("p50_ms_{}", "p50 latency, {}", "ms", "lower", "propagation", 3, percentile_of(50, _LATENCIES), _rate)
P99_MS = Metric("p99_ms_{}", "p99 latency, {}", "ms", "lower", "propagation", 3, percentile_of(99, _LATENCIES), _rate)
P999_MS = Metric(
    "p999_ms_{}", "p99.9 latency, {}", "ms", "lower", "propagation", 3, percentile_of(99.9, _LATENCIES), _rate
)
DELIVERED = Metric("delivered_{}", "events delivered ÷ writes, {}", "", "higher", "propagation", 4, _DELIVERED, _rate)
RAW_P50_MS = Metric(
    "raw_p50_ms_{}", "raw watch p50, {}", "ms", "lower", "propagation", 3, percentile_of(50, _LATENCIES), _rate
)
RAW_P99_MS = Metric(
    "raw_p99_ms_{}", "raw watch p99, {}", "ms", "lower", "propagation", 3, percentile_of(99, _LATENCIES), _rate
)
RAW_DELIVERED = Metric(
    "raw_delivered_{}", "raw watch delivered ÷ writes, {}", "", "higher", "propagation", 4, _DELIVERED, _rate
)
P99_VS_RAW = Metric(
    "p99_vs_raw_{}", "p99 registry ÷ raw, {}", "", "lower", "propagation", 2, ratio_of(P99_MS, RAW_P99_MS), _rate
)
WRITES_PER_S = Metric(
    "writes_per_s_max", "writes/s reached, registry (register)", "/s", "higher", "propagation", per_round=_WRITES
)
RAW_WRITES_PER_S = Metric(
    "raw_writes_per_s_max", "writes/s reached, raw client", "/s", "higher", "propagation", per_round=_WRITES
)
LATENCY_SERIES = "latency_ms_{}"
"""The propagation samples kept for the plots, per rate tag: the registry's latencies, ms."""
RAW_LATENCY_SERIES = "raw_latency_ms_{}"
"""The same for the raw client's watch."""

# Lookups: the registry, the cache, the provider; then write → visible in the cache against the watch event.
LOOKUP_KINDS = ("registry", "cache", "pick")
"""The lookups timed, in report order (the family tags of :data:`LOOKUP_PER_S` and :data:`LOOKUP_P99_US`)."""
_LOOKUP_CALLS = {"registry": "reg.instances()", "cache": "cache.instances()", "pick": "provider.pick()"}


def _lookup(kind: str) -> tuple[str, str]:
    return kind, _LOOKUP_CALLS[kind]


LOOKUP_PER_S = Metric(
    "per_s_{}",
    "{} calls/s",
    "/s",
    "higher",
    "lookup",
    3,
    measured("calls ÷ the seconds their timed batches took"),
    _lookup,
)
LOOKUP_P99_US = Metric(
    "p99_us_{}",
    "{} p99 per call",
    "µs",
    "lower",
    "lookup",
    3,
    percentile_of(99, "per-call latencies (each timed batch's seconds ÷ its calls)"),
    _lookup,
)
PICK_PER_S = LOOKUP_PER_S.at("pick")
"""provider.pick() calls per second: the pick goal's figure."""
CACHE_SPEEDUP = Metric(
    "cache_vs_registry",
    "cache.instances() ÷ reg.instances() calls/s",
    "",
    "higher",
    "lookup",
    3,
    ratio_of(LOOKUP_PER_S.at("cache"), LOOKUP_PER_S.at("registry")),
)
_VISIBLE_LATENCIES = "write → visible in cache.instances() latencies"
_EVENT_LATENCIES = "write → watch event latencies (same writes)"
CACHE_VISIBLE_P50_MS = Metric(
    "cache_visible_p50_ms",
    "write → visible in cache, p50",
    "ms",
    "lower",
    "lookup",
    3,
    percentile_of(50, _VISIBLE_LATENCIES),
)
CACHE_VISIBLE_P99_MS = Metric(
    "cache_visible_p99_ms",
    "write → visible in cache, p99",
    "ms",
    "lower",
    "lookup",
    3,
    percentile_of(99, _VISIBLE_LATENCIES),
)
WATCH_EVENT_P50_MS = Metric(
    "watch_event_p50_ms", "write → watch event, p50", "ms", "lower", "lookup", 3, percentile_of(50, _EVENT_LATENCIES)
)
WATCH_EVENT_P99_MS = Metric(
    "watch_event_p99_ms", "write → watch event, p99", "ms", "lower", "lookup", 3, percentile_of(99, _EVENT_LATENCIES)
)
VISIBLE_VS_EVENT = Metric(
    "visible_vs_event_p99",
    "cache visibility p99 ÷ watch event p99",
    "",
    "lower",
    "lookup",
    2,
    ratio_of(CACHE_VISIBLE_P99_MS, WATCH_EVENT_P99_MS),
)
CACHE_VISIBLE = Metric(
    "cache_visible",
    "writes visible in the cache ÷ writes",
    "",
    "higher",
    "lookup",
    4,
    measured("distinct new instances seen in the cache's view ÷ writes"),
)
WATCH_EVENT_DELIVERED = Metric(
    "watch_delivered",
    "watch events delivered ÷ writes (same writes)",
    "",
    "higher",
    "lookup",
    4,
    _DELIVERED,
)

# The dashboard in a browser, per live-instance count: render, register → node up, page memory.
DASHBOARD_RENDER_MS = Metric(
    "render_ms_{}",
    "page.goto() → first snapshot rendered, {} instances",
    "ms",
    "lower",
    "dashboard",
    3,
    measured("ms from page.goto() to body[data-ready] found"),
    _instances,
)
DASHBOARD_UP_MS = Metric(
    "up_ms_{}",
    "register() → node up in the browser, {} instances",
    "ms",
    "lower",
    "dashboard",
    3,
    each("register: ms from before register() to the node's data-health=up found"),
    _instances,
)
DASHBOARD_HEAP_MIB = Metric(
    "heap_mib_{}",
    "page JS heap used, {} instances",
    "MiB",
    "lower",
    "dashboard",
    3,
    measured("JSHeapUsedSize after a forced garbage collection, once the snapshot rendered"),
    _instances,
)

# Burst completeness.
_EVENTS = measured("distinct ADDED and REMOVED events delivered ÷ 2N")
BURST_DELIVERED = Metric("delivered", "events delivered ÷ 2N, discovery watch", "", "higher", "burst", 4, _EVENTS)
BURST_LOST = Metric(
    "lost", "events lost, discovery watch", "", "lower", "burst", per_round=measured("2N - events delivered")
)
NAIVE_DELIVERED = Metric(
    "naive_delivered", "events delivered ÷ 2N, naive re-watch loop", "", "higher", "burst", 4, _EVENTS
)
BURST_RESYNCS = Metric(
    "resyncs", "resyncs of the watch", "", "", "burst", per_round=measured("resyncs the watch counted")
)
BURST_REGISTER_S = Metric(
    "register_s",
    "time to register N (registrant processes)",
    "s",
    "lower",
    "burst",
    per_round=measured("seconds until all ready"),
)
BURST_EXPIRY_S = Metric(
    "expiry_s",
    "kill to last REMOVED delivered",
    "s",
    "lower",
    "burst",
    per_round=measured("seconds to the last REMOVED"),
)

# Failure detection: each kill of a round is one observation.
DETECT_S = Metric(
    "detect_s_ttl{}", "kill → REMOVED, ttl {} s", "s", "lower", "detection", 3, each("kill: seconds to REMOVED"), _ttl
)
EXCESS_S = Metric(
    "excess_s_ttl{}",
    "detection - ttl, ttl {} s",
    "s",
    "lower",
    "detection",
    3,
    each("kill: seconds to REMOVED - ttl"),
    _ttl,
)
MISSED = Metric(
    "missed_ttl{}",
    "REMOVED never delivered, ttl {} s",
    "",
    "lower",
    "detection",
    3,
    measured("kills never seen removed"),
    _ttl,
)

# Keep-alive cost, over one idle window per size.
REQUESTS_PER_S = Metric(
    "requests_per_s_{}",
    "server requests/s, {} instances",
    "/s",
    "lower",
    "keepalive",
    3,
    measured("server request counter increase ÷ window seconds"),
    _instances,
)
CPU_PCT = Metric(
    "cpu_pct_{}",
    "client CPU, {} instances",
    "%",
    "lower",
    "keepalive",
    3,
    measured("holder CPU seconds ÷ window seconds x 100"),
    _instances,
)
HISTORY_PER_S = Metric(
    "history_per_s_{}",
    "history advance/s, {} instances",
    "/s",
    "lower",
    "keepalive",
    3,
    measured("history position advance ÷ window seconds"),
    _instances,
)
WINDOW_GAPS = Metric(
    "window_gaps_{}",
    "idle watcher history-window resyncs, {} instances",
    "",
    "lower",
    "keepalive",
    3,
    measured("an idle watcher's history-window resyncs in the window"),
    _instances,
)
ALIVE = Metric(
    "alive_{}",
    "instances kept alive ÷ N, {} instances",
    "",
    "higher",
    "keepalive",
    4,
    measured("registrations alive after the window ÷ N"),
    _instances,
)

# Client memory.
_RSS = measured("resident memory growth ÷ instances x 10,000")
RSS_PER_10K_REGISTERED = Metric(
    "rss_mb_per_10k_registered", "RSS growth per 10,000 registered instances", "MiB", "lower", "memory", 3, _RSS
)
RSS_PER_10K_WATCH = Metric(
    "rss_mb_per_10k_watch", "RSS growth per 10,000-instance watch", "MiB", "lower", "memory", 3, _RSS
)

# Resync cost: the resync rounds run inside the keep-alive round, each one observation.
REQUESTED_RESYNC_S = Metric(
    "requested_resync_s",
    "request_resync() → re-list and diff done",
    "s",
    "lower",
    "resync",
    3,
    each("resync round: seconds from request_resync() to its RESYNCED notice"),
)
REQUESTED_CONVERGED_S = Metric(
    "requested_converged_s",
    "request_resync() → converged",
    "s",
    "lower",
    "resync",
    3,
    each("resync round: seconds until snapshot + events equal a listing at its revision"),
)
REQUESTED_EVENTS = Metric(
    "requested_events",
    "events emitted by the requested resync (minimal: 0)",
    "",
    "lower",
    "resync",
    3,
    each("resync round: events between the requested resync's RESYNC_STARTED and RESYNCED notices"),
)
GAP_DELIVERED_S = Metric(
    "gap_delivered_s",
    "gap: resume → last changed instance delivered",
    "s",
    "lower",
    "resync",
    3,
    each("gap round: seconds until the last change arrived"),
)
GAP_CONVERGED_S = Metric(
    "gap_converged_s",
    "gap: resume → converged",
    "s",
    "lower",
    "resync",
    3,
    each("gap round: seconds until snapshot + events equal a listing at its revision"),
)
GAP_MISSING = Metric(
    "gap_missing",
    "gap: changed instances whose new value never arrived",
    "",
    "lower",
    "resync",
    3,
    each("gap round: changes never delivered"),
)
GAP_EXTRA = Metric(
    "gap_extra",
    "gap: unchanged instances emitted (minimal: 0)",
    "",
    "lower",
    "resync",
    3,
    each("gap round: instances not changed by the round that the resync emitted"),
)

# Scale: one holder process grows step by step at one ttl until a step loses an instance; then watcher fan-out.
SCALE_KNEE = Metric(
    "knee",
    "knee: the most instances held with zero expiries",
    "",
    "higher",
    "scale",
    3,
    measured("the largest step every instance of which was kept alive through the step (0: none)"),
)
SCALE_LIMIT = Metric(
    "limit",
    "the first step that lost an instance (or failed)",
    "",
    "",
    "scale",
    3,
    measured("the first step at which an instance expired or the step failed; the reason is in the notes"),
)
SCALE_EXPIRED = Metric(
    "expired_{}",
    "expiries, {} instances",
    "",
    "lower",
    "scale",
    3,
    measured(
        "expiries through the step, the larger of: REMOVED events a watcher saw, re-registrations the holder "
        "made, instances not alive at the end (an instance re-registered may expire again)"
    ),
    _instances,
)
SCALE_REGISTER_PER_S = Metric(
    "register_per_s_{}",
    "registrations/s while growing, {} instances",
    "/s",
    "higher",
    "scale",
    3,
    measured("instances added ÷ seconds until the holder acknowledged the last"),
    _instances,
)
SCALE_REQUESTS_PER_S = Metric(
    "requests_per_s_{}",
    "keep-alive: server requests/s, {} instances",
    "/s",
    "lower",
    "scale",
    3,
    measured("server request counter increase ÷ hold seconds, the holder idle"),
    _instances,
)
SCALE_CPU_PCT = Metric(
    "cpu_pct_{}",
    "keep-alive: client CPU, {} instances",
    "%",
    "lower",
    "scale",
    3,
    measured("holder CPU seconds ÷ hold seconds x 100"),
    _instances,
)
SCALE_SERVER_CPU_PCT = Metric(
    "server_cpu_pct_{}",
    "keep-alive: server CPU, {} instances",
    "%",
    "lower",
    "scale",
    3,
    measured("server processes' CPU seconds ÷ hold seconds x 100 (psutil)"),
    _instances,
)
SCALE_RESYNC_S = Metric(
    "resync_s_{}",
    "request_resync() → RESYNCED, {} instances",
    "s",
    "lower",
    "scale",
    3,
    measured("seconds from request_resync() to its RESYNCED notice, in a watcher's own process"),
    _instances,
)
SCALE_SNAPSHOT_S = Metric(
    "snapshot_s_{}",
    "reg.snapshot(), {} instances",
    "s",
    "lower",
    "scale",
    3,
    measured("seconds reg.snapshot() took, in a watcher's own process"),
    _instances,
)
_FANOUT_LATENCIES = "write → consumer latencies, every watcher's (one not delivered counts as later than all)"
FANOUT_P50_MS = Metric(
    "fanout_p50_ms_{}", "fan-out p50, {}", "ms", "lower", "scale", 3, percentile_of(50, _FANOUT_LATENCIES), _watchers
)
FANOUT_P99_MS = Metric(
    "fanout_p99_ms_{}", "fan-out p99, {}", "ms", "lower", "scale", 3, percentile_of(99, _FANOUT_LATENCIES), _watchers
)
FANOUT_DELIVERED = Metric(
    "fanout_delivered_{}",
    "fan-out events delivered within 10 s ÷ (writes x watchers), {}",
    "",
    "higher",
    "scale",
    4,
    measured("new instances seen by each watcher within 10 s of the last write, added up ÷ (writes x watchers)"),
    _watchers,
)
FANOUT_SERVER_CPU_PCT = Metric(
    "fanout_server_cpu_pct_{}",
    "fan-out server CPU while writing, {}",
    "%",
    "lower",
    "scale",
    3,
    measured("server processes' CPU seconds ÷ seconds from the first write until every watcher had every write x 100"),
    _watchers,
)
FANOUT_OPEN_S = Metric(
    "fanout_open_s_{}",
    "fan-out: seconds to open the watches up to {}",
    "s",
    "lower",
    "scale",
    3,
    measured("seconds to open this level's new watches, spread over the watcher processes (each lists everything)"),
    _watchers,
)
SCALE_SERIES = (
    SCALE_REQUESTS_PER_S,
    SCALE_CPU_PCT,
    SCALE_SERVER_CPU_PCT,
    SCALE_RESYNC_S,
    SCALE_SNAPSHOT_S,
    SCALE_REGISTER_PER_S,
)
"""The per-step costs the scale plot draws against N."""

# Peer membership (tooz).
_JOINS, _LEAVES = "join → notification latencies", "leave → notification latencies"
JOIN_MS_P50 = Metric("join_ms_p50", "join → notified, p50", "ms", "lower", "peers", 3, percentile_of(50, _JOINS))
JOIN_MS_MAX = Metric("join_ms_max", "join → notified, max", "ms", "lower", "peers", 3, largest(_JOINS))
LEAVE_MS_P50 = Metric("leave_ms_p50", "leave → notified, p50", "ms", "lower", "peers", 3, percentile_of(50, _LEAVES))
PAIR_JOINS_SEEN = Metric(
    "pair_joins_seen",
    "joins reported of {} quick join+leave pairs",
    "",
    "higher",
    "peers",
    3,
    measured("joins the watcher reported"),
    _pairs,
)
PAIR_LEAVES_SEEN = Metric(
    "pair_leaves_seen",
    "leaves reported of {} quick join+leave pairs",
    "",
    "higher",
    "peers",
    3,
    measured("leaves the watcher reported"),
    _pairs,
)
