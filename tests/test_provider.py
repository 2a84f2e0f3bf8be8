"""Providers over a cache on the memory backend: strategies, zones, filters, the down-instance policy, validation."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from discovery import (
    InvalidMeta,
    InvalidName,
    InvalidValue,
    NoInstances,
    NotFound,
    Provider,
    Registration,
    Registry,
    ServiceCache,
    connect,
)
from discovery._codec import encode_instance, instance_key
from discovery.cli._errors import NOT_FOUND, exit_code_for
from discovery.models import Instance
from discovery.testing.memory import MemoryFixtures
from discovery.testing.provider_suite import ProviderSuite
from discovery.testing.waiting import wait_until

TIMEOUT = 10.0
SERVICE = "shop/api"


class TestProviderMemory(ProviderSuite, MemoryFixtures):
    pass


@pytest.fixture
def reg() -> Iterator[Registry]:
    with connect(f"memory://provider-{uuid.uuid4().hex[:12]}/r") as registry:
        yield registry


@pytest.fixture
def cache(reg: Registry) -> Iterator[ServiceCache]:
    with reg.cache("shop") as service_cache:
        yield service_cache


def _ids(cache: ServiceCache, service: str = SERVICE) -> set[str]:
    return set(cache.view(service).by_id)


def _settle(cache: ServiceCache, ids: set[str], service: str = SERVICE) -> None:
    assert cache.wait_for(lambda c: _ids(c, service) == ids, TIMEOUT), (_ids(cache, service), ids)


def _register(reg: Registry, cache: ServiceCache, metas: dict[str, dict[str, object]]) -> dict[str, Registration]:
    leases = {instance_id: reg.register(SERVICE, instance_id, meta=meta) for instance_id, meta in metas.items()}
    _settle(cache, _ids(cache) | set(metas))
    return leases


def _picks(provider: Provider, n: int) -> list[str]:
    return [provider.pick().id for _ in range(n)]


# -- strategies ----------------------------------------------------------------


def test_round_robin_visits_every_instance_once_per_cycle_and_follows_changes(
    reg: Registry, cache: ServiceCache
) -> None:
    _register(reg, cache, {"a": {}, "b": {}, "c": {}})
    provider = cache.provider(SERVICE)
    assert provider.strategy == "round-robin"
    picks = _picks(provider, 30)
    assert all(sorted(picks[i : i + 3]) == ["a", "b", "c"] for i in range(0, 30, 3)), picks
    _register(reg, cache, {"d": {}})
    picks = _picks(provider, 40)
    assert all(sorted(picks[i : i + 4]) == ["a", "b", "c", "d"] for i in range(0, 40, 4)), picks


def test_round_robin_from_many_threads_shares_one_cycle(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {}, "b": {}, "c": {}, "d": {}})
    provider = cache.provider(SERVICE, "round-robin")
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def pick_many() -> None:
        local = Counter(_picks(provider, 1000))
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=pick_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == {"a": 2000, "b": 2000, "c": 2000, "d": 2000}


def test_random_picks_only_and_eventually_every_instance(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {}, "b": {}, "c": {}})
    provider = cache.provider(SERVICE, "random")
    assert set(_picks(provider, 500)) == {"a", "b", "c"}


def test_sticky_keeps_its_instance_until_removed_then_moves(reg: Registry, cache: ServiceCache) -> None:
    leases = _register(reg, cache, {"a": {}, "b": {}, "c": {}})
    provider = cache.provider(SERVICE, "sticky")
    first = provider.pick().id
    assert set(_picks(provider, 100)) == {first}
    leases[first].update(meta={"version": "2"})
    assert cache.wait_for(lambda c: c.view(SERVICE).by_id[first].meta.get("version") == "2", TIMEOUT)
    picked = provider.pick()
    assert picked.id == first and picked.meta["version"] == "2"
    reg.deregister(SERVICE, first)
    _settle(cache, {"a", "b", "c"} - {first})
    second = provider.pick().id
    assert second != first
    assert set(_picks(provider, 100)) == {second}


def test_weighted_proportions_within_three_points(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {"weight": 1}, "b": {"weight": 2}, "c": {"weight": 7}})
    counts = Counter(_picks(cache.provider(SERVICE, "weighted"), 10_000))
    for instance_id, expected in {"a": 0.1, "b": 0.2, "c": 0.7}.items():
        assert abs(counts[instance_id] / 10_000 - expected) <= 0.03, counts


def test_weighted_counts_missing_or_foreign_weights_as_one(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"plain": {}, "heavy": {"weight": 2.0}})
    # Another tool wrote a weight register() refuses: it counts as 1.
    reg.backend.put(instance_key(SERVICE, "odd"), encode_instance(None, None, {"weight": "lots"}), None)
    _settle(cache, {"plain", "heavy", "odd"})
    counts = Counter(_picks(cache.provider(SERVICE, "weighted"), 10_000))
    for instance_id, expected in {"plain": 0.25, "odd": 0.25, "heavy": 0.5}.items():
        assert abs(counts[instance_id] / 10_000 - expected) <= 0.03, counts


def test_a_single_instance_is_always_picked(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"only": {"weight": 0.001}})
    for strategy in ("round-robin", "random", "sticky", "weighted"):
        assert set(_picks(cache.provider(SERVICE, strategy), 50)) == {"only"}


# -- zones and filters ---------------------------------------------------------


@pytest.mark.parametrize("strategy", ["round-robin", "random", "sticky", "weighted"])
def test_zone_first_then_others_then_back(reg: Registry, cache: ServiceCache, strategy: str) -> None:
    _register(reg, cache, {"eu-a": {"zone": "eu"}, "eu-b": {"zone": "eu"}, "us-a": {"zone": "us"}, "x": {}})
    provider = cache.provider(SERVICE, strategy, zone="eu")
    assert set(_picks(provider, 200)) <= {"eu-a", "eu-b"}
    reg.deregister(SERVICE, "eu-a")
    reg.deregister(SERVICE, "eu-b")
    _settle(cache, {"us-a", "x"})
    assert set(_picks(provider, 200)) <= {"us-a", "x"}
    _register(reg, cache, {"eu-c": {"zone": "eu"}})
    assert set(_picks(provider, 50)) == {"eu-c"}


def test_zone_falls_back_when_its_instances_are_down_or_filtered(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"eu-a": {"zone": "eu", "tags": ["canary"]}, "eu-b": {"zone": "eu"}, "us-a": {}})
    provider = cache.provider(SERVICE, zone="eu", filter=lambda i: "canary" not in i.meta.get("tags", []))
    assert set(_picks(provider, 20)) == {"eu-b"}
    provider.report_error(cache.view(SERVICE).by_id["eu-b"])
    provider.report_error(cache.view(SERVICE).by_id["eu-b"])
    assert set(_picks(provider, 20)) == {"us-a"}


def test_filter_rejects_and_follows_updates(reg: Registry, cache: ServiceCache) -> None:
    leases = _register(reg, cache, {"a": {"tags": ["v1"]}, "b": {"tags": ["v2"]}, "c": {"tags": ["v2"]}})
    calls: list[str] = []

    def is_v2(instance: Instance) -> bool:
        calls.append(instance.id)
        return "v2" in instance.meta.get("tags", [])

    provider = cache.provider(SERVICE, "random", filter=is_v2)
    assert set(_picks(provider, 1000)) == {"b", "c"}
    assert sorted(calls) == ["a", "b", "c"], "the filter runs once per instance per change, not per pick"
    leases["a"].update(meta={"tags": ["v2"]})
    assert cache.wait_for(lambda c: c.view(SERVICE).by_id["a"].meta["tags"] == ["v2"], TIMEOUT)
    assert set(_picks(provider, 300)) == {"a", "b", "c"}


# -- the down-instance policy --------------------------------------------------


def test_errors_within_the_window_make_an_instance_sit_out_then_it_returns(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {}, "b": {}})
    provider = cache.provider(SERVICE, errors=2, window=30, cooldown=0.2)
    a = cache.view(SERVICE).by_id["a"]
    provider.report_error(a)
    assert set(_picks(provider, 10)) == {"a", "b"}, "one error is not enough"
    provider.report_error(a)
    assert provider.down == {"a"}
    assert set(_picks(provider, 10)) == {"b"}
    wait_until(lambda: "a" in _picks(provider, 2), timeout=TIMEOUT, message="a never came back")
    assert provider.down == frozenset()


def test_errors_outside_the_window_do_not_add_up(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {}, "b": {}})
    provider = cache.provider(SERVICE, errors=2, window=5, cooldown=60)
    now = [1000.0]
    provider._clock = lambda: now[0]  # the window is about time; a fake clock tests it without waiting
    a = cache.view(SERVICE).by_id["a"]
    provider.report_error(a)
    now[0] += 6
    provider.report_error(a)
    assert provider.down == frozenset()
    now[0] += 4
    provider.report_error(a)
    assert provider.down == {"a"}
    now[0] += 59
    provider.report_error(a)  # while down: does not prolong the cool-down
    assert set(_picks(provider, 10)) == {"b"}
    now[0] += 1
    assert set(_picks(provider, 10)) == {"a", "b"}


def test_all_down_raises_and_a_new_instance_is_picked(reg: Registry, cache: ServiceCache) -> None:
    _register(reg, cache, {"a": {}})
    provider = cache.provider(SERVICE, "sticky", errors=1, cooldown=60)
    provider.report_error(provider.pick())
    with pytest.raises(NoInstances) as caught:
        provider.pick()
    assert caught.value.reason == "all-down" and "down" in str(caught.value)
    _register(reg, cache, {"b": {}})
    assert provider.pick().id == "b"


def test_report_error_refuses_an_instance_of_another_service(reg: Registry, cache: ServiceCache) -> None:
    provider = cache.provider(SERVICE)
    with pytest.raises(InvalidValue) as caught:
        provider.report_error(Instance("shop/web", "a"))
    assert caught.value.field == "instance"


# -- errors and validation -----------------------------------------------------


def test_no_instances_names_the_service_and_why(reg: Registry, cache: ServiceCache) -> None:
    with pytest.raises(NoInstances) as empty:
        cache.provider(SERVICE).pick()
    assert (empty.value.service, empty.value.reason) == (SERVICE, "no-instances")
    assert SERVICE in str(empty.value)
    _register(reg, cache, {"a": {}})
    with pytest.raises(NoInstances) as filtered:
        cache.provider(SERVICE, filter=lambda i: False).pick()
    assert filtered.value.reason == "filtered-out" and "filter" in str(filtered.value)
    assert isinstance(filtered.value, NotFound)
    assert exit_code_for(filtered.value) == NOT_FOUND == 5


def test_bad_strategy_policy_zone_filter_or_service_are_refused(cache: ServiceCache) -> None:
    with pytest.raises(InvalidValue) as strategy:
        cache.provider(SERVICE, "least-loaded")
    assert strategy.value.field == "strategy" and "round-robin" in str(strategy.value)
    bad_policies: list[dict[str, Any]] = [
        {"errors": 0},
        {"errors": True},
        {"errors": 1.5},
        {"errors": "2"},
        {"window": 0},
        {"window": -1},
        {"window": float("inf")},
        {"window": float("nan")},
        {"cooldown": True},
        {"cooldown": "30"},
        {"retries": 3},
    ]
    for policy in bad_policies:
        with pytest.raises(InvalidValue) as caught:
            cache.provider(SERVICE, **policy)
        assert caught.value.field == next(iter(policy)), policy
    for zone in ["", "a b", "eu/1", "_x", 5]:
        with pytest.raises(InvalidValue) as bad_zone:
            cache.provider(SERVICE, zone=zone)  # type: ignore[arg-type]
        assert bad_zone.value.field == "zone"
    with pytest.raises(InvalidValue) as bad_filter:
        cache.provider(SERVICE, filter="v2")  # type: ignore[arg-type]
    assert bad_filter.value.field == "filter"
    with pytest.raises(InvalidName):
        cache.provider("shop//api")


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"weight": 0}, "weight"),
        ({"weight": -1}, "weight"),
        ({"weight": True}, "weight"),
        ({"weight": "2"}, "weight"),
        ({"weight": 10**7}, "weight"),
        ({"zone": ""}, "zone"),
        ({"zone": "eu west"}, "zone"),
        ({"zone": "eu/west"}, "zone"),
        ({"zone": 1}, "zone"),
        ({"tags": "canary"}, "tags"),
        ({"tags": ["ok", ""]}, "tags"),
        ({"tags": ["a", "a"]}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": {"a": 1}}, "tags"),
    ],
)
def test_well_known_meta_is_checked_at_register_and_update(reg: Registry, meta: dict[str, object], key: str) -> None:
    with pytest.raises(InvalidMeta) as caught:
        reg.register(SERVICE, "a", meta=meta)
    assert caught.value.field == f"meta.{key}" and f"meta.{key}" in str(caught.value)
    assert reg.instances(SERVICE) == []
    lease = reg.register(SERVICE, "b", meta={"weight": 2, "zone": "eu-1", "tags": ["v2", "canary"]})
    with pytest.raises(InvalidMeta) as on_update:
        lease.update(meta=meta)
    assert on_update.value.field == f"meta.{key}"
    assert [dict(i.meta) for i in reg.instances(SERVICE)] == [{"weight": 2, "zone": "eu-1", "tags": ["v2", "canary"]}]


# -- concurrency ---------------------------------------------------------------


def test_picks_from_many_threads_never_return_an_instance_whose_removal_was_applied(
    reg: Registry, cache: ServiceCache
) -> None:
    _register(reg, cache, {f"i-{n}": {"weight": 1 + n % 3, "zone": "eu" if n % 2 else "us"} for n in range(5)})
    registered = set(_ids(cache))
    removed: set[str] = set()  # removals the cache has applied, confirmed by wait_for
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    providers = [
        cache.provider(SERVICE, "round-robin"),
        cache.provider(SERVICE, "random", errors=1, cooldown=0.01),
        cache.provider(SERVICE, "sticky"),
        cache.provider(SERVICE, "weighted", zone="eu"),
    ]

    def picker(provider: Provider) -> None:
        while not stop.is_set():
            with lock:
                gone = set(removed)
            try:
                instance = provider.pick()
            except NoInstances:
                continue
            if instance.id in gone or instance.id not in registered:
                failures.append(f"{provider.strategy} picked {instance.id} (removed: {instance.id in gone})")
            if provider.strategy == "random" and instance.id.endswith("7"):
                provider.report_error(instance)

    threads = [threading.Thread(target=picker, args=(p,)) for p in providers for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for n in range(5, 105):
            new, old = f"i-{n}", f"i-{n - 5}"
            registered.add(new)
            reg.register(SERVICE, new, meta={"weight": 1 + n % 3, "zone": "eu" if n % 2 else "us"})
            reg.deregister(SERVICE, old)
            _settle(cache, {f"i-{k}" for k in range(n - 4, n + 1)})
            with lock:
                removed.add(old)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
