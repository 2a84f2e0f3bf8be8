"""Client memory: resident memory a client process gains per 10,000 registered instances and per 10,000-instance watch.

Measured with psutil on the keep-alive population's holder process, one per
backend, so nothing else lives in it: its resident size after connecting,
after registering the population (keep-alive included), and after opening a
watch over it (the watch's snapshot and its model of every instance). Both
growths are scaled to 10,000 instances when the population has another size.
An in-process store (memory://) lives in that same process, so its figures include the data.
"""

from __future__ import annotations

from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.results import Observations
from discovery_bench.workloads.population import HolderPopulation

SECTION = "memory"
TITLE = "Client memory"
DESCRIPTION = (
    "Resident memory growth of one client process (psutil), per 10,000 instances it registered, and per "
    "10,000-instance watch it opened; measured on the keep-alive population's holder at its largest size. "
    "memory:// holds its store in the same process."
)
_MIB = 1024 * 1024


def memory_metrics() -> list[Metric]:
    """The metrics of the client-memory section."""
    return [m.RSS_PER_10K_REGISTERED, m.RSS_PER_10K_WATCH]


def measure_memory(population: HolderPopulation, rss_connected: int, obs: Observations) -> None:
    """Read the holder's growth since ``rss_connected``, then open a watch in it and read again."""
    size = population.size
    registered = population.rss()
    population.open_watch()
    watching = population.rss()
    obs.add(m.RSS_PER_10K_REGISTERED, (registered - rss_connected) / size * 10_000 / _MIB)
    obs.add(m.RSS_PER_10K_WATCH, (watching - registered) / size * 10_000 / _MIB)
    if size != 10_000:
        obs.note(f"measured with {size:,} instances, scaled to 10,000", SECTION)
