"""The headline: which few figures the terminal summary, ``report.md`` and the README lead with, in order.

Each row names a metric of the catalogue, and for a family which member: a
given rate or concurrency, or the first or last size or ttl the run measured
(the profile decides which exist). A metric the report lacks is left out.
"""

from __future__ import annotations

from collections.abc import Callable

from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.document import Report
from discovery_bench.report.format import cell_text

_FIRST, _LAST = 0, -1

_ROWS: list[tuple[Metric, str | int | None]] = [
    (m.REGISTRY_RATE, "1"),
    (m.REGISTRY_RATE, "8"),
    (m.REGISTER_RATIO, "1"),
    (m.REGISTER_MANY_RATE, None),
    (m.REGISTER_MANY_VS_RAW_BEST, None),
    (m.P99_MS, "1000"),
    (m.P99_VS_RAW, "1000"),
    (m.PICK_PER_S, None),
    (m.CACHE_SPEEDUP, None),
    (m.VISIBLE_VS_EVENT, None),
    (m.DASHBOARD_UP_MS, _LAST),
    (m.BURST_DELIVERED, None),
    (m.NAIVE_DELIVERED, None),
    (m.DETECT_S, _FIRST),
    (m.REQUESTS_PER_S, _LAST),
    (m.CPU_PCT, _LAST),
    (m.GAP_CONVERGED_S, None),
    (m.RSS_PER_10K_REGISTERED, None),
    (m.SCALE_KNEE, None),
]
"""(metric, member): a key tag, the first or last member present, or None for a single metric."""


def _resync_label(report: Report) -> str:
    instances = report["workloads"][m.GAP_CONVERGED_S.section]["params"].get("instances", 0)
    return f"resync of {instances:,} instances, converged"


def _pick_label(report: Report) -> str:
    instances = report["workloads"][m.PICK_PER_S.section]["params"].get("instances", 0)
    return f"provider.pick() calls/s, {instances:,} instances"


def _knee_label(report: Report) -> str:
    ttl = report["workloads"][m.SCALE_KNEE.section]["params"].get("ttl_s", 0)
    return f"scale knee: most instances one process kept alive at ttl {ttl:g} s"


_LABELS: dict[str, Callable[[Report], str]] = {
    m.GAP_CONVERGED_S.key: _resync_label,
    m.PICK_PER_S.key: _pick_label,
    m.SCALE_KNEE.key: _knee_label,
}
"""Rows whose label says more than the metric's own (the size it was measured at)."""


def _key(report: Report, metric: Metric, member: str | int | None) -> str | None:
    if isinstance(member, str):
        return metric.key_at(member)
    if isinstance(member, int):
        keys = metric.keys(report.get("workloads", {}))
        return keys[member] if keys else None
    return metric.key


def headline_rows(report: Report) -> list[tuple[str, dict[str, str]]]:
    """The headline figures: (row label, per-backend text), in the order they are shown."""
    backends = list(report.get("backends", {}))
    rows: list[tuple[str, dict[str, str]]] = []
    for metric, member in _ROWS:
        key = _key(report, metric, member)
        section = report.get("workloads", {}).get(metric.section, {})
        entry = section.get("metrics", {}).get(key) if key else None
        if not isinstance(entry, dict):
            continue
        label = _LABELS[key](report) if key in _LABELS else entry["label"]
        rows.append((label, {b: cell_text(entry["backends"].get(b), entry, ranges=False) for b in backends}))
    return rows
