"""discovery.metrics on real registries: what a scrape reports after real actions, on every backend.

Each test connects to the memory backend and to the session's local etcd (v3
and v2 API) and ZooKeeper, each under a fresh root, acts through the public
API (register, define, watch, update, close, a lost session), then parses
the exposition text with ``prometheus_client``'s own parser and checks the
values. Waits have deadlines (``wait_until``); nothing sleeps a fixed time.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import discovery
import discovery.metrics as dm
from discovery import EventKind, Registry
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.waiting import wait_until

DEADLINE = 30.0
BOUNDED_LABELS = {"backend", "prefix", "kind", "reason", "state", "service", "health"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(params=["memory", "etcd", "etcd2", "zookeeper"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def reg(scheme: str, request: pytest.FixtureRequest) -> Iterator[Registry]:
    """A registry on a fresh root of ``scheme``'s backend, closed after the test."""
    name = f"metrics-{uuid.uuid4().hex[:10]}"
    if scheme == "memory":
        url = f"memory://{name}"
    elif scheme == "zookeeper":
        cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue("zookeeper_cluster")
        url = f"{cluster.url(scheme, f'/{name}')}?session_timeout=2"
    else:
        cluster = request.getfixturevalue("etcd_cluster")
        url = cluster.url(scheme, f"/{name}")
    with discovery.connect(url) as registry:
        yield registry


def scrape(metrics: dm.RegistryMetrics) -> Samples:
    """Every sample of one scrape, by (sample name, labels)."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def eventually(metrics: dm.RegistryMetrics, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until ``name{labels}`` equals ``expected``; return that scrape."""

    def check() -> Samples | None:
        samples = scrape(metrics)
        return samples if value(samples, name, **labels) == expected else None

    found = wait_until(check, timeout=DEADLINE, message=f"{name}{labels} never became {expected}")
    assert found is not None
    return found


def at_least(metrics: dm.RegistryMetrics, name: str, minimum: float, **labels: str) -> Samples:
    """Scrape until ``name{labels}`` is at least ``minimum``; return that scrape."""

    def check() -> Samples | None:
        samples = scrape(metrics)
        found = value(samples, name, **labels)
        return samples if found is not None and found >= minimum else None

    found = wait_until(check, timeout=DEADLINE, message=f"{name}{labels} never reached {minimum}")
    assert found is not None
    return found


def drain(watch: discovery.Watch, count: int) -> list[discovery.Event]:
    events: list[discovery.Event] = []
    while len(events) < count:
        event = watch.get(DEADLINE)
        assert event is not None, f"only {len(events)} of {count} events within {DEADLINE} s"
        events.append(event)
    return events


# -- the module's surface ----------------------------------------------------


def test_importing_discovery_does_not_import_prometheus() -> None:
    code = (
        "import sys, discovery, discovery.cache, discovery.aio, discovery.memory, discovery_etcd, "
        "discovery_zookeeper; assert 'prometheus_client' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_metric_is_declared_once_with_help_and_bounded_labels() -> None:
    names = [spec.name for spec in dm.METRICS]
    assert len(names) == len(set(names))
    for spec in dm.METRICS:
        assert spec.name.startswith("discovery_") and spec.help.strip()
        assert set(spec.labels) <= BOUNDED_LABELS, spec
        assert spec.kind in {"counter", "gauge", "histogram"}
        assert spec.kind != "counter" or not spec.name.endswith("_total")
    table = dm.metrics_table()
    assert all(f"`{spec.sample_name}`" in table for spec in dm.METRICS)
    assert dm.__all__ == sorted(dm.__all__)


def test_the_exposition_carries_each_declared_help_text() -> None:
    with discovery.connect(f"memory://metrics-{uuid.uuid4().hex[:10]}") as reg, dm.enable(reg) as metrics:
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition()[0].decode())}
    for spec in dm.METRICS:
        assert families[spec.name].documentation == spec.help
        assert families[spec.name].type == spec.kind


# -- per service ---------------------------------------------------------------


def test_service_instances_minimum_and_health(reg: Registry) -> None:
    with dm.enable(reg) as metrics:
        reg.define("shop/web", min_instances=2)
        reg.register("shop/api", "api-1", address="10.0.0.1", port=80)
        reg.register("shop/api", "api-2", address="10.0.0.2", port=80)
        reg.register("shop/web", "web-1", address="10.0.0.3", port=80)
        # The last write: the cache applies changes in order, so the earlier ones are in.
        samples = eventually(metrics, "discovery_service_instances", 1, service="shop/web")
    assert value(samples, "discovery_service_instances", service="shop/api") == 2
    assert value(samples, "discovery_service_min_instances", service="shop/web") == 2
    assert value(samples, "discovery_service_instances", service="shop") == 0
    assert value(samples, "discovery_service_min_instances", service="shop/api") is None
    health = {
        (service, h): value(samples, "discovery_service_health", service=service, health=h)
        for service in ("shop", "shop/api", "shop/web")
        for h in ("up", "degraded", "down")
    }
    assert health == {
        ("shop", "up"): 0,
        ("shop", "degraded"): 1,
        ("shop", "down"): 0,
        ("shop/api", "up"): 1,
        ("shop/api", "degraded"): 0,
        ("shop/api", "down"): 0,
        ("shop/web", "up"): 0,
        ("shop/web", "degraded"): 1,
        ("shop/web", "down"): 0,
    }
    assert value(samples, "discovery_registrations_alive") == 3
    assert value(samples, "discovery_registrations_waiting") == 0
    assert value(samples, "discovery_registry_info", backend=reg.backend.name) == 1


def test_no_service_metrics_without_services(reg: Registry) -> None:
    reg.register("svc", "one")
    with dm.enable(reg, services=None) as metrics:
        samples = scrape(metrics)
        assert metrics.cache is None and reg.watches() == []
    assert not any(name.startswith("discovery_service_") for name, _ in samples)


def test_a_given_cache_is_used_and_left_open(reg: Registry) -> None:
    reg.register("a/x", "one")
    reg.register("b/y", "two")
    with reg.cache("a") as cache:
        with dm.enable(reg, services="", cache=cache) as metrics:
            samples = scrape(metrics)
            assert len(reg.watches()) == 1
        assert not cache.closed
        assert value(samples, "discovery_service_instances", service="a/x") == 1
        assert value(samples, "discovery_service_instances", service="b/y") is None
        with pytest.raises(discovery.InvalidValue):
            dm.enable(reg, services="b", cache=cache)


# -- watches -----------------------------------------------------------------


def test_events_by_kind_after_add_update_remove(reg: Registry) -> None:
    with dm.enable(reg, services=None) as metrics, reg.watch("svc") as watch:
        registration = reg.register("svc", "one", port=1)
        registration.update(port=2)
        registration.close()
        kinds = [event.kind for event in drain(watch, 3)]
        assert kinds == [EventKind.ADDED, EventKind.UPDATED, EventKind.REMOVED]
        samples = scrape(metrics)
        for kind in ("added", "updated", "removed"):
            assert value(samples, "discovery_watch_events_total", prefix="svc", kind=kind) == 1
        assert value(samples, "discovery_watch_state", prefix="svc", state="connected") == 1
        assert value(samples, "discovery_watch_buffered_items", prefix="svc") == 0
        assert (value(samples, "discovery_watch_delivery_lag_seconds_count", prefix="svc") or 0) >= 3
    assert not any(dict(labels).get("prefix") == "svc" for _, labels in scrape(metrics))


def test_a_forced_resync_counts_its_reason(reg: Registry) -> None:
    with dm.enable(reg, services=None) as metrics, reg.watch("") as watch:
        reg.register("svc", "one")
        drain(watch, 1)
        watch.request_resync("x")
        samples = eventually(metrics, "discovery_watch_resyncs_total", 1, prefix="/", reason="x")
    assert value(samples, "discovery_watch_events_total", prefix="/", kind="added") == 1


def test_buffer_depth_and_delivery_lag_while_the_consumer_does_not_read(reg: Registry) -> None:
    with dm.enable(reg, services=None) as metrics, reg.watch("svc") as watch:
        for n in range(5):
            reg.register("svc", f"i{n}")
        at_least(metrics, "discovery_watch_buffered_items", 5, prefix="svc")
        assert value(scrape(metrics), "discovery_watch_delivery_lag_seconds_count", prefix="svc") == 0
        drain(watch, 5)
        samples = scrape(metrics)
    assert value(samples, "discovery_watch_buffered_items", prefix="svc") == 0
    count = value(samples, "discovery_watch_delivery_lag_seconds_count", prefix="svc")
    assert count is not None and count >= 5
    total = value(samples, "discovery_watch_delivery_lag_seconds_sum", prefix="svc")
    assert total is not None and total > 0
    buckets = [
        value(samples, "discovery_watch_delivery_lag_seconds_bucket", prefix="svc", le=le)
        for le in [*(repr(b) for b in dm.LAG_BUCKETS), "+Inf"]
    ]
    assert buckets == sorted(buckets) and buckets[-1] == count  # type: ignore[type-var]


def test_watches_on_one_prefix_are_summed(reg: Registry) -> None:
    with dm.enable(reg, services=None) as metrics, reg.watch("svc"), reg.watch("svc"):
        reg.register("svc", "one")
        samples = eventually(metrics, "discovery_watch_events_total", 2, prefix="svc", kind="added")
    assert value(samples, "discovery_watch_state", prefix="svc", state="connected") == 2


# -- registrations and sessions ----------------------------------------------


def lose_session(reg: Registry, scheme: str) -> None:
    """End the registry's sessions behind its back, on the server where there is one."""
    backend = reg.backend
    if scheme == "memory":
        backend.expire_sessions()  # type: ignore[attr-defined]
    elif scheme == "etcd":
        for session in reg.sessions:
            backend.client.lease_revoke(int(session.id))  # type: ignore[attr-defined]
    elif scheme == "etcd2":
        for registration in reg.registrations():
            backend.delete(registration.key)
    else:
        backend.expire_session()  # type: ignore[attr-defined]


def test_keepalives_are_counted_where_the_backend_sees_them(reg: Registry, scheme: str) -> None:
    with dm.enable(reg, services=None) as metrics:
        samples = scrape(metrics)
        assert value(samples, "discovery_keepalive_requests_total") is None  # no session yet
        reg.register("svc", "one", ttl=reg.backend.min_ttl)
        if scheme == "zookeeper":
            samples = scrape(metrics)
            assert not any(name.startswith("discovery_keepalive_") for name, _ in samples)
            assert "discovery_keepalive_requests" in metrics.exposition()[0].decode()  # declared, no samples
            return
        samples = at_least(metrics, "discovery_keepalive_requests_total", 3)
    assert value(samples, "discovery_keepalive_failures_total") == 0


def test_a_lost_session_counts_a_reregistration(reg: Registry, scheme: str) -> None:
    with dm.enable(reg, services=None) as metrics:
        registration = reg.register("svc", "one", ttl=reg.backend.min_ttl)
        assert value(scrape(metrics), "discovery_reregistrations_total") == 0
        lose_session(reg, scheme)
        samples = eventually(metrics, "discovery_reregistrations_total", 1)
        wait_until(lambda: registration.alive, timeout=DEADLINE, message="never re-registered")
        samples = eventually(metrics, "discovery_registrations_alive", 1)
    assert value(samples, "discovery_registrations_waiting") == 0
    if scheme != "zookeeper":
        failures = value(samples, "discovery_keepalive_failures_total")
        assert failures is not None and failures >= 1


# -- labels, lifecycle -------------------------------------------------------


def test_labels_never_carry_instance_ids(reg: Registry) -> None:
    ids = [f"instance-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with dm.enable(reg) as metrics, reg.watch("svc") as watch:
        for instance_id in ids:
            reg.register("svc", instance_id, meta={"zone": "z1"})
        drain(watch, 3)
        samples = eventually(metrics, "discovery_service_instances", 3, service="svc")
    for _, labels in samples:
        assert set(dict(labels)) <= BOUNDED_LABELS | {"le"}
        assert not any(instance_id in label for label in dict(labels).values() for instance_id in ids)


def test_close_unregisters_and_closes_the_cache_it_opened() -> None:
    with discovery.connect(f"memory://metrics-{uuid.uuid4().hex[:10]}") as reg:
        metrics = dm.enable(reg)
        assert metrics.cache is not None and len(reg.watches()) == 1
        metrics.close()
        metrics.close()
        assert metrics.cache.closed and reg.watches() == []
        assert b"discovery_" not in metrics.exposition()[0]


def test_one_registry_per_collector_registry_and_joining_an_existing_one() -> None:
    target = prometheus_client.CollectorRegistry()
    other = prometheus_client.Counter("app_requests", "The application's own metric.", registry=target)
    other.inc()
    name = f"memory://metrics-{uuid.uuid4().hex[:10]}"
    with discovery.connect(name) as reg, discovery.connect(name) as second:
        with dm.enable(reg, services=None, collector_registry=target) as metrics:
            body = metrics.exposition()[0].decode()
            assert "app_requests_total 1.0" in body and "discovery_registrations_alive" in body
            with pytest.raises(ValueError):
                dm.enable(second, services="", collector_registry=target)
            assert second.watches() == []  # the cache it opened was closed again
        assert "discovery_" not in prometheus_client.generate_latest(target).decode()
