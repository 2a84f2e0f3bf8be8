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
Connecting and cleaning up are outside the timed part.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from discovery import Registry
from discovery_bench.harness.raw import RAW_CLIENTS, RawRegistrant, raw_registrant
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.harness.threads import run_together
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Workload

_TTL = 60.0
_RAW_VALUE = json.dumps({"address": "127.0.0.1", "meta": {}, "port": 8080, "registrant": "raw"}).encode()


class RegisterWorkload(Workload):
    """Registrations per second, registry and raw client, 1 and 8 registrants."""

    name = "register"
    title = "Registration throughput"
    description = (
        "N instances registered by 1 and by 8 concurrent registrants (each its own connection), "
        "registrations per second; the raw client does the same writes in the same round; ratio = registry ÷ raw."
    )

    def metrics(self) -> list[Metric]:
        families = (m.REGISTRY_RATE, m.RAW_RATE, m.REGISTER_RATIO)
        metrics = [family.at(c) for c in self.profile.register_concurrency for family in families]
        return [*metrics, m.RAW_ASYNC_RATE]

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
        obs = Observations()
        for c in self.profile.register_concurrency:
            ids = [f"i{i}" for i in range(n)]
            registry_first = round_index % 2 == 0
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
        return obs

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
