"""The dashboard in a real browser: first render, register → node up, and the page's memory, per live-instance count.

Each round serves the dashboard (:func:`discovery.dashboard.create_app`, in
a thread of this process, on its own connection) for a prefix of its own,
with a cache on exactly that prefix, and drives Debian's headless Chromium
through Playwright (:func:`discovery.testing.browser.browser_page`, launched
once for every backend; no browser is ever downloaded). A population
(:mod:`~discovery_bench.workloads.population`: a holder process, or this
process for memory://) grows to each size of ``dashboard_sizes`` (100 then
10,000 in the default profile), spread evenly over ``dashboard_services``
services below the prefix. Once the dashboard's cache holds them all, a page
in a fresh browser context (its own renderer, so its own JavaScript heap):

- render: wall clock from just before ``page.goto()`` until
  ``body[data-ready="true"]`` is found: the page, its script and style, the
  event stream's connection, the snapshot of every instance, its parsing and
  rendering; then the root node must show every instance (``data-total``);
- heap: ``JSHeapUsedSize`` (CDP ``Performance.getMetrics``) after a forced
  garbage collection (CDP ``HeapProfiler.collectGarbage``), so the figure is
  what the page keeps, not what it has yet to collect; in MiB;
- register → node up, ``dashboard_repetitions`` times: a new service is
  defined (``min_instances=1``, on a second connection, the writer's) and
  its node is awaited in the page, down; then wall clock from just before
  ``register()`` of its first instance until
  ``.node[data-service=...][data-health="up"]`` is found. This includes the
  write's acknowledgement, the watch delivering it to the dashboard's cache,
  the feed's coalescing (it flushes at most every 100 ms, so up to 100 ms of
  the figure is by design), the event stream, the page applying and drawing
  the tree, and Playwright noticing (it polls the selector once per animation
  frame, about 16 ms, then answers over its protocol). The round trip of a
  ``wait_for_selector`` that matches at once is measured too and shown as a
  note: it is the floor of this figure.

The probe services are undefined and their instances deregistered before
the next size; the population is deregistered at the end of the round, as
the workloads that follow share the servers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discovery import Registration, Registry, ServiceCache
from discovery.testing.browser import CHROMIUM
from discovery_bench.harness.targets import BenchTarget
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.base import Context, Workload
from discovery_bench.workloads.population import HolderPopulation, LocalPopulation, Population

READY = 'body[data-ready="true"]'
"""The page applied its first snapshot."""

_TTL = 60.0
_READY_SECONDS = 120.0
_WAIT_MS = 60_000.0
_FLOOR_SAMPLES = 5
_WARM_UP_REPETITIONS = 2
_MODULES = ("playwright", "starlette", "uvicorn")


def node_selector(service: str, **data: object) -> str:
    """The dashboard's selector of ``service``'s node with these ``data-`` attributes (``health="up"``...)."""
    attributes = "".join(f'[data-{name}="{value}"]' for name, value in data.items())
    return f'.node[data-service="{service}"]{attributes}'


def heap_used_mib(metrics: Sequence[Mapping[str, Any]]) -> float:
    """``JSHeapUsedSize`` in MiB, from the metrics of CDP ``Performance.getMetrics``.

    Raises:
        KeyError: the metrics hold no ``JSHeapUsedSize``.
    """
    for metric in metrics:
        if metric.get("name") == "JSHeapUsedSize":
            return float(metric["value"]) / 2**20
    raise KeyError("JSHeapUsedSize")


def missing_requirement() -> str | None:
    """Why the workload cannot run on this machine (no Chromium, no Playwright...), or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (Debian's chromium package)"
    for module in _MODULES:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed (discovery-registry[dashboard], playwright)"
    return None


def _held(cache: ServiceCache) -> int:
    """Live instances in the cache, every service added up."""
    return sum(len(cache.view(service).instances) for service in cache.services())


class _Probes:
    """Services defined with no instance, each then given one; undefined and deregistered on close."""

    def __init__(self, writer: Registry, prefix: str) -> None:
        self._writer = writer
        self._prefix = prefix
        self._defined: list[str] = []
        self._registrations: list[Registration] = []

    def up_ms(self, page: Any, name: str) -> float:
        """Define ``prefix/name``, wait for its node down, then time register → its node up, in ms."""
        service = f"{self._prefix}/{name}"
        self._writer.define(service, 1)
        self._defined.append(service)
        page.wait_for_selector(node_selector(service, health="down"), timeout=_WAIT_MS)
        up = node_selector(service, health="up")
        started = time.perf_counter()
        self._registrations.append(self._writer.register(service, "i0", address="127.0.0.1", ttl=_TTL))
        page.wait_for_selector(up, timeout=_WAIT_MS)
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        for registration in self._registrations:
            registration.close()
        for service in self._defined:
            self._writer.undefine(service)


@contextlib.contextmanager
def _probes(writer: Registry, prefix: str) -> Iterator[_Probes]:
    probes = _Probes(writer, prefix)
    try:
        yield probes
    finally:
        probes.close()


def _floor_ms(page: Any, selector: str) -> float:
    """The median round trip of ``wait_for_selector`` on a selector that already matches, in ms."""
    samples = []
    for _ in range(_FLOOR_SAMPLES):
        started = time.perf_counter()
        page.wait_for_selector(selector, timeout=_WAIT_MS)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _heap(page: Any) -> tuple[float, int]:
    """(JS heap used in MiB after a garbage collection, DOM nodes) of ``page``, read over CDP."""
    session = page.context.new_cdp_session(page)
    try:
        session.send("HeapProfiler.collectGarbage")
        session.send("Performance.enable")
        metrics = session.send("Performance.getMetrics")["metrics"]
    finally:
        session.detach()
    nodes = next((int(metric["value"]) for metric in metrics if metric.get("name") == "Nodes"), 0)
    return heap_used_mib(metrics), nodes


@dataclass(frozen=True)
class _Stage:
    """What one round measures through: the browser, the dashboard's URL and cache, the writer, the prefix."""

    browser: Any
    url: str
    cache: ServiceCache
    writer: Registry
    prefix: str


class DashboardWorkload(Workload):
    """The dashboard at each live-instance count: first render, register → node up, page JS heap."""

    name = "dashboard"
    title = "Dashboard in a browser"
    description = (
        "N live instances spread evenly over S services, the dashboard served for them and opened in headless "
        "Chromium (Playwright), a fresh browser context (its own renderer) per size and backend. "
        "Render: page.goto() → first snapshot applied (body[data-ready]). "
        "Heap: the page's JSHeapUsedSize after a forced garbage collection (CDP). "
        "Register → node up: a service defined with min 1 and no instance shows down; wall clock from just "
        "before register() of its first instance until its node's data-health=up is found by "
        "page.wait_for_selector: the write, the watch, the feed's coalescing (flush at most every 100 ms), the "
        "event stream, the page's drawing, and Playwright's polling (once per animation frame) and round trip "
        "(its floor is in the notes)."
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._browser: Any = None
        self._closing = contextlib.ExitStack()
        self._users = 0

    def metrics(self) -> list[Metric]:
        families = (m.DASHBOARD_RENDER_MS, m.DASHBOARD_UP_MS, m.DASHBOARD_HEAP_MIB)
        return [family.at(size) for size in self.profile.dashboard_sizes for family in families]

    def params(self) -> dict[str, Any]:
        return {
            "sizes": list(self.profile.dashboard_sizes),
            "services": self.profile.dashboard_services,
            "repetitions": self.profile.dashboard_repetitions,
            "rounds": self.profile.dashboard_rounds,
            "browser": f"{CHROMIUM} --headless, driven by Playwright",
        }

    def rounds(self) -> int:
        return self.profile.dashboard_rounds

    def warm_up(self) -> bool:
        return self.profile.warm_up

    def applies(self, target: BenchTarget) -> str | None:
        return missing_requirement()

    def setup(self, target: BenchTarget) -> None:
        # One browser for every backend (a launch costs about a second); each size gets a fresh context.
        if self._browser is None:
            from discovery.testing.browser import browser_page

            with contextlib.ExitStack() as stack:
                self._browser = stack.enter_context(browser_page()).context.browser
                self._closing = stack.pop_all()
        self._users += 1

    def teardown(self, target: BenchTarget) -> None:
        self._users -= 1
        if self._users == 0:
            self._browser = None
            self._closing.close()

    def run(self, target: BenchTarget, round_index: int) -> Observations:
        from discovery.dashboard import create_app, running

        if self._browser is None:
            raise RuntimeError("the browser is not open: setup() did not run")
        warm = round_index < 0
        sizes = self.profile.dashboard_sizes[:1] if warm else self.profile.dashboard_sizes
        repetitions = min(self.profile.dashboard_repetitions, _WARM_UP_REPETITIONS) if warm else None
        prefix = self.ctx.naming.service("dashboard", "warm" if warm else f"r{round_index}")
        obs = Observations()
        population = self._population(target, prefix)
        try:
            with (
                target.connect() as viewer,
                target.connect() as writer,
                viewer.cache(prefix) as cache,
                running(create_app(viewer, prefix, cache=cache)) as url,
            ):
                stage = _Stage(self._browser, url, cache, writer, prefix)
                for size in sizes:
                    population.grow(size)
                    self._measure(stage, size, repetitions, obs)
        finally:
            if isinstance(population, HolderPopulation):
                population.close(deregister=True)
            else:
                population.close()
        return obs

    def _population(self, target: BenchTarget, prefix: str) -> Population:
        services = self.profile.dashboard_services
        if target.traits.in_process:
            return LocalPopulation(target, prefix, _TTL, services)
        return HolderPopulation(self.ctx.children, target, prefix, _TTL, services)

    def _measure(self, stage: _Stage, size: int, repetitions: int | None, obs: Observations) -> None:
        # The snapshot must hold all N: wait until the dashboard's cache has every instance (and no probe left).
        if not stage.cache.wait_for(lambda c: _held(c) == size, _READY_SECONDS):
            raise AssertionError(f"the dashboard's cache holds {_held(stage.cache)} of {size} instances")
        context = stage.browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            started = time.perf_counter()
            page.goto(stage.url)
            page.wait_for_selector(READY, timeout=_WAIT_MS)
            obs.add(m.DASHBOARD_RENDER_MS.at(size), (time.perf_counter() - started) * 1000)
            page.wait_for_selector(node_selector(stage.prefix, total=size), timeout=_WAIT_MS)
            heap, nodes = _heap(page)
            obs.add(m.DASHBOARD_HEAP_MIB.at(size), heap)
            with _probes(stage.writer, stage.prefix) as probes:
                count = self.profile.dashboard_repetitions if repetitions is None else repetitions
                latencies = [probes.up_ms(page, f"probe-{size}-{index}") for index in range(count)]
                floor = _floor_ms(page, node_selector(f"{stage.prefix}/probe-{size}-0", health="up"))
            obs.observe(m.DASHBOARD_UP_MS.at(size), latencies)
            obs.note(f"{size:,} instances: {nodes:,} DOM nodes; wait_for_selector already matching: {floor:.1f} ms")
        finally:
            context.close()
