"""Registration throughput: N instances registered by 1 and by 8 concurrent registrants, against the raw client.

Each registrant is its own connection (a registry, or a bare client for the
baseline) on its own thread, registering its share of the N ids with a ttl
long enough that nothing expires during the round; the rate is N divided by
the time from release to the last registration acknowledged. The raw baseline
does the same writes with the client library alone (see :mod:`~discovery_bench.harness.raw`),
in the same round on the same server, and the ratio registry ÷ raw is taken
within each round so machine drift cancels out. Within a round the two run in
alternating order. Where the bare client can pipeline writes (kazoo's
``create_async``), a third figure shows what a client gains by not waiting
for each answer.

Bulk registration is measured in the same rounds: one registry registers the
round's N instances with one ``register_many()`` call, which writes them in
batches of the backend's ``max_batch`` (etcd v3: one transaction per batch,
ZooKeeper: one ``multi``, etcd v2: key by key, its documented fallback), with
the same ttl. It runs first in even rounds and last in odd ones. Its figures:

- registry register_many, instances/s (N ÷ seconds until ``register_many()`` returned);
- register_many ÷ raw client's best single-op rate: the best the raw client
  reached in the same round, the largest of its rates at every concurrency
  measured and, where measured, its pipelined rate.

Connecting and cleaning up are outside the timed part.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from discovery import Instance, Registry
from discovery.backend import Backend
from discovery_bench.harness.raw import RAW_CLIENTS, RawRegistrant, raw_registrant
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.harness.threads import run_together
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.stats import ratio
from discovery_bench.workloads.base import Workload

_TTL = 60.0
_RAW_VALUE = json.dumps({"address": "127.0.0.1", "meta": {}, "port": 8080, "registrant": "raw"}).encode()


def raw_best(obs: Observations, concurrency: Sequence[int]) -> float | None:
    """The best rate the raw client reached in this round: its rate at every concurrency and its pipelined rate.

    None when the round recorded none of them.
    """
    keys = [m.RAW_RATE.at(c).key for c in concurrency] + [m.RAW_ASYNC_RATE.key]
    rates = [value for key in keys for value in obs.values.get(key, [])]
    return max(rates) if rates else None


def _batching(registry: Registry) -> str:
    """How ``registry``'s backend writes a ``register_many()``: its ``max_batch``, and one request or key by key."""
    size = registry.backend.max_batch
    if type(registry.backend).put_many is Backend.put_many:
        return f"register_many: batches of up to {size} instances, written key by key (no multi-key write)"
    return f"register_many: batches of up to {size} instances, one request each"


class RegisterWorkload(Workload):
    """Registrations per second, registry and raw client, 1 and 8 registrants; register_many against the raw best."""

    name = "register"
    title = "Registration throughput"
    description = (
        "N instances registered by 1 and by 8 concurrent registrants (each its own connection), "
        "registrations per second; the raw client does the same writes in the same round; ratio = registry ÷ raw. "
        "register_many: one registrant registers the N instances in one register_many() call (batches of the "
        "backend's max_batch), against the raw client's best rate of the same round."
    )

    def metrics(self) -> list[Metric]:
        families = (m.REGISTRY_RATE, m.RAW_RATE, m.REGISTER_RATIO)
        metrics = [family.at(c) for c in self.profile.register_concurrency for family in families]
        return [*metrics, m.RAW_ASYNC_RATE, m.REGISTER_MANY_RATE, m.REGISTER_MANY_VS_RAW_BEST]

    def params(self) -> dict[str, Any]:
        return {
            "instances": self.profile.register_instances,
            "warm_up_instances": self.profile.register_warmup,
            "concurrency": list(self.profile.register_concurrency),
            "rounds": self.profile.register_rounds,
            "raw_clients": RAW_CLIENTS,
        }

    def rounds(self) -> int:
        return self.profile.register_rounds

    def warm_up(self) -> bool:
        return self.profile.warm_up

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        n = self.profile.register_warmup if round_index < 0 else self.profile.register_instances
        tag = "warm" if round_index < 0 else f"r{round_index}"
        registry_first = round_index % 2 == 0
        obs = Observations()
        many: Callable[[], None] = functools.partial(self._measure_many, target, tag, n, obs)
        if registry_first:
            many()
        for c in self.profile.register_concurrency:
            ids = [f"i{i}" for i in range(n)]
            rates: dict[str, float] = {}
            for kind in ("registry", "raw") if registry_first else ("raw", "registry"):
                service = self.ctx.naming.service("register", tag, kind, f"c{c}")
                measure = self._registry if kind == "registry" else self._raw
                rates[kind] = n / measure(target, service, ids, c)
            obs.add(m.REGISTRY_RATE.at(c), rates["registry"])
            obs.add(m.RAW_RATE.at(c), rates["raw"])
        if target.traits.pipelined_raw_client:
            ids = [f"i{i}" for i in range(n)]
            raw = raw_registrant(target, self.ctx.naming.service("register", tag, "async"), _TTL)
            try:
                obs.add(m.RAW_ASYNC_RATE, n / run_together([lambda: raw.register_async(ids, _RAW_VALUE)]))
            finally:
                raw.close()
        else:
            obs.na(m.RAW_ASYNC_RATE, "ZooKeeper only (kazoo create_async)")
        if not registry_first:
            many()
        best = raw_best(obs, self.profile.register_concurrency)
        rate = obs.values[m.REGISTER_MANY_RATE.key][0]
        obs.add(m.REGISTER_MANY_VS_RAW_BEST, ratio(rate, best) if best is not None else None, "no raw rate")
        return obs

    def _measure_many(self, target: BenchTarget, tag: str, n: int, obs: Observations) -> None:
        """Register ``n`` instances with one ``register_many()`` call of one registry; record the rate."""
        service = self.ctx.naming.service("register", tag, "many")
        instances = [Instance(service, f"i{i}", "127.0.0.1", 8080) for i in range(n)]
        registry = target.connect()
        try:
            obs.note(_batching(registry))
            seconds = run_together([lambda: self._register_many(registry, instances)])
        finally:
            registry.close()
        obs.add(m.REGISTER_MANY_RATE, n / seconds)

    @staticmethod
    def _register_many(registry: Registry, instances: list[Instance]) -> None:
        made = registry.register_many(instances, ttl=_TTL)
        if len(made) != len(instances):
            raise AssertionError(f"register_many returned {len(made)} registrations for {len(instances)} instances")

    def _registry(self, target: BenchTarget, service: str, ids: list[str], concurrency: int) -> float:
        registries: list[Registry] = []
        try:
            for _ in range(concurrency):
                registries.append(target.connect())

            def job(registry: Registry, share: list[str]) -> None:
                for instance_id in share:
                    registry.register(service, instance_id, address="127.0.0.1", port=8080, ttl=_TTL)

            return run_together(
                [functools.partial(job, registry, ids[k::concurrency]) for k, registry in enumerate(registries)]
            )
        finally:
            for registry in registries:
                registry.close()

    def _raw(self, target: BenchTarget, service: str, ids: list[str], concurrency: int) -> float:
        clients: list[RawRegistrant] = []
        try:
            for _ in range(concurrency):
                clients.append(raw_registrant(target, service, _TTL))

            def job(client: RawRegistrant, share: list[str]) -> None:
                for instance_id in share:
                    client.register(instance_id, _RAW_VALUE)

            return run_together(
                [functools.partial(job, client, ids[k::concurrency]) for k, client in enumerate(clients)]
            )
        finally:
            for client in clients:
                client.close()
