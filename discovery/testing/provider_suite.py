"""The provider scenarios every backend must pass, as a mixin: ``class TestEtcdProvider(ProviderSuite, EtcdFixtures)``.

Instances are registered through ``other`` (another client, as another
process would) and picked through a cache and a provider on ``registry``, so
each scenario checks that a provider follows what the backend's watch
delivers: round-robin visits each instance once per cycle, sticky keeps its
instance until the cache applies its removal, weighted picks follow the
weights, and zone preference falls back when the zone empties and returns
when it fills again. Waiting is on the cache (``wait_for``), never a sleep.
"""

from __future__ import annotations

from collections import Counter

import pytest

from discovery import NoInstances, Registry, ServiceCache
from discovery.testing.fixtures import RegistryFixtures

WEIGHTED_PICKS = 10_000
WEIGHTED_TOLERANCE = 0.03
"""Weighted shares must lie within 3 percentage points of the weights' (over 6 standard deviations here)."""


def _has(cache: ServiceCache, service: str, ids: set[str]) -> bool:
    return set(cache.view(service).by_id) == ids


class ProviderSuite(RegistryFixtures):
    """Provider scenarios every backend must pass."""

    def test_round_robin_visits_each_instance_once_per_cycle(self, registry: Registry, other: Registry) -> None:
        ids = {"a", "b", "c", "d"}
        with registry.cache("rr") as cache:
            for instance_id in sorted(ids):
                other.register("rr/api", instance_id, port=8080)
            assert cache.wait_for(lambda c: _has(c, "rr/api", ids), self.timeout)
            provider = cache.provider("rr/api", "round-robin")
            picks = [provider.pick().id for _ in range(len(ids) * 5)]
            for start in range(0, len(picks), len(ids)):
                assert sorted(picks[start : start + len(ids)]) == sorted(ids), picks

    def test_sticky_keeps_its_instance_until_it_is_removed(self, registry: Registry, other: Registry) -> None:
        ids = {"a", "b", "c"}
        with registry.cache("sticky") as cache:
            for instance_id in sorted(ids):
                other.register("sticky/api", instance_id)
            assert cache.wait_for(lambda c: _has(c, "sticky/api", ids), self.timeout)
            provider = cache.provider("sticky/api", "sticky")
            first = provider.pick()
            assert {provider.pick().id for _ in range(50)} == {first.id}
            other.register("sticky/api", "d")
            assert cache.wait_for(lambda c: _has(c, "sticky/api", ids | {"d"}), self.timeout)
            assert {provider.pick().id for _ in range(50)} == {first.id}
            other.deregister("sticky/api", first.id)
            left = (ids | {"d"}) - {first.id}
            assert cache.wait_for(lambda c: _has(c, "sticky/api", left), self.timeout)
            second = provider.pick()
            assert second.id in left
            assert {provider.pick().id for _ in range(50)} == {second.id}

    def test_weighted_picks_follow_the_weights(self, registry: Registry, other: Registry) -> None:
        weights = {"a": 1, "b": 2, "c": 7}
        with registry.cache("weighted") as cache:
            for instance_id, weight in weights.items():
                other.register("weighted/api", instance_id, meta={"weight": weight})
            assert cache.wait_for(lambda c: _has(c, "weighted/api", set(weights)), self.timeout)
            provider = cache.provider("weighted/api", "weighted")
            counts = Counter(provider.pick().id for _ in range(WEIGHTED_PICKS))
        total = sum(weights.values())
        for instance_id, weight in weights.items():
            share = counts[instance_id] / WEIGHTED_PICKS
            assert abs(share - weight / total) <= WEIGHTED_TOLERANCE, (instance_id, share, counts)

    @pytest.mark.parametrize("strategy", ["round-robin", "random", "sticky", "weighted"])
    def test_zone_falls_back_and_returns(self, registry: Registry, other: Registry, strategy: str) -> None:
        with registry.cache("zoned") as cache:
            other.register("zoned/api", "near", meta={"zone": "eu-1"})
            other.register("zoned/api", "far-1", meta={"zone": "us-1"})
            other.register("zoned/api", "far-2")
            assert cache.wait_for(lambda c: _has(c, "zoned/api", {"near", "far-1", "far-2"}), self.timeout)
            provider = cache.provider("zoned/api", strategy, zone="eu-1")
            assert {provider.pick().id for _ in range(30)} == {"near"}
            other.deregister("zoned/api", "near")
            assert cache.wait_for(lambda c: _has(c, "zoned/api", {"far-1", "far-2"}), self.timeout)
            assert {provider.pick().id for _ in range(30)} <= {"far-1", "far-2"}
            other.register("zoned/api", "near-2", meta={"zone": "eu-1"})
            assert cache.wait_for(lambda c: _has(c, "zoned/api", {"near-2", "far-1", "far-2"}), self.timeout)
            assert {provider.pick().id for _ in range(30)} == {"near-2"}

    def test_no_instances_once_the_last_is_removed(self, registry: Registry, other: Registry) -> None:
        with registry.cache("gone") as cache:
            other.register("gone/api", "a")
            assert cache.wait_for(lambda c: _has(c, "gone/api", {"a"}), self.timeout)
            provider = cache.provider("gone/api")
            assert provider.pick().id == "a"
            other.deregister("gone/api", "a")
            assert cache.wait_for(lambda c: _has(c, "gone/api", set()), self.timeout)
            with pytest.raises(NoInstances) as caught:
                provider.pick()
            assert (caught.value.service, caught.value.reason) == ("gone/api", "no-instances")


__all__ = ["ProviderSuite"]
