"""The project's goals, measured per backend: shown as progress in the report, never asserted.

Each goal reads the workloads' results in ``report.json`` form, so the README
renderer can show the same verdicts from the file alone. A goal is met,
missed, or not measured (its workload did not run on that backend); never
guessed. The goals:

- no event lost in any workload (propagation, lookup, burst, failure detection, resync);
- registry ÷ raw client registration rate at least 0.9;
- watch p99 within 1.5x the raw client's watch on the same server;
- failure detection within ttl + 1 s;
- a 10,000-instance resync converged within 2 s;
- ``provider.pick()`` at least 1,000,000 per second on 1,000 instances;
- write → visible in a cache, p99 within 1.2x the watch event's p99 (same writes, same round);
- the dashboard's node up in the browser within 1 s of ``register()`` (median) at 10,000 instances.

A goal measured at another size than its own (a smoke run) says so in a note.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m

Workloads = dict[str, Any]
Verdict = dict[str, Any]

_NOT_MEASURED: Verdict = {"met": None, "value": None, "display": "not measured"}


def _events_lost(workloads: Workloads, backend: str) -> Verdict:
    """Events lost in the worst round of every workload that counts them, added up."""
    lost = 0.0
    measured = False
    for entry in workloads.get(m.DELIVERED.section, {}).get("params", {}).get("rates", []):
        cell = m.DELIVERED.cell(workloads, backend, m.DELIVERED.key_at(entry["tag"]))
        if cell is not None:
            measured = True
            lost += round((1 - m.DELIVERED.worst_round(cell)) * int(entry["writes"]))
    writes = workloads.get(m.CACHE_VISIBLE.section, {}).get("params", {}).get("writes")
    for metric in (m.CACHE_VISIBLE, m.WATCH_EVENT_DELIVERED):
        cell = metric.cell(workloads, backend)
        if cell is not None and isinstance(writes, int):
            measured = True
            lost += round((1 - metric.worst_round(cell)) * writes)
    for metric in (m.BURST_LOST, m.GAP_MISSING, m.MISSED):
        for cell in metric.cells(workloads, backend):
            measured = True
            lost += metric.worst_round(cell)
    if not measured:
        return dict(_NOT_MEASURED)
    return {"met": lost == 0, "value": lost, "display": f"{lost:,.0f} lost"}


def _worst(workloads: Workloads, backend: str, metric: Metric) -> float | None:
    """The worst median among the members of ``metric`` (every rate, concurrency or ttl measured)."""
    medians = [float(cell["median"]) for cell in metric.cells(workloads, backend)]
    return metric.worst(medians) if medians else None


def _threshold(value: float | None, ok: Callable[[float], bool], display: Callable[[float], str]) -> Verdict:
    if value is None:
        return dict(_NOT_MEASURED)
    return {"met": ok(value), "value": value, "display": display(value)}


def _dashboard_up(workloads: Workloads, backend: str) -> Verdict:
    """register() → node up in the browser at the largest size measured: the median, with the slowest shown."""
    keys = m.DASHBOARD_UP_MS.keys(workloads)
    cell = m.DASHBOARD_UP_MS.cell(workloads, backend, keys[-1]) if keys else None
    if cell is None:
        return dict(_NOT_MEASURED)
    median, slowest = float(cell["median"]), m.DASHBOARD_UP_MS.worst_round(cell)
    return {"met": median <= 1000, "value": median, "display": f"{median:,.0f} ms (slowest {slowest:,.0f})"}


GOALS: list[tuple[str, str, Callable[[Workloads, str], Verdict]]] = [
    ("events", "0 events lost in every workload", _events_lost),
    (
        "register_ratio",
        "registry ÷ raw registration rate ≥ 0.9",
        lambda w, b: _threshold(_worst(w, b, m.REGISTER_RATIO), lambda v: v >= 0.9, lambda v: f"{v:.3f}"),
    ),
    (
        "watch_p99",
        "watch p99 ≤ 1.5 x raw client's",
        lambda w, b: _threshold(_worst(w, b, m.P99_VS_RAW), lambda v: v <= 1.5, lambda v: f"{v:.2f}x"),
    ),
    (
        "detection",
        "failure detection ≤ ttl + 1 s",
        lambda w, b: _threshold(_worst(w, b, m.EXCESS_S), lambda v: v <= 1.0, lambda v: f"ttl {v:+.2f} s"),
    ),
    (
        "resync",
        "10,000-instance resync ≤ 2 s",
        lambda w, b: _threshold(_worst(w, b, m.GAP_CONVERGED_S), lambda v: v <= 2.0, lambda v: f"{v:.2f} s"),
    ),
    (
        "pick",
        "provider.pick() ≥ 1,000,000/s on 1,000 instances",
        lambda w, b: _threshold(_worst(w, b, m.PICK_PER_S), lambda v: v >= 1_000_000, lambda v: f"{v:,.0f}/s"),
    ),
    (
        "cache_visibility",
        "cache visibility p99 ≤ 1.2 x watch event p99",
        lambda w, b: _threshold(_worst(w, b, m.VISIBLE_VS_EVENT), lambda v: v <= 1.2, lambda v: f"{v:.2f}x"),
    ),
    ("dashboard_up", "dashboard node up ≤ 1 s after register() (median), 10,000 instances", _dashboard_up),
]

_SIZES: dict[str, tuple[Metric, int]] = {
    "resync": (m.GAP_CONVERGED_S, 10_000),
    "pick": (m.PICK_PER_S, 1_000),
    "dashboard_up": (m.DASHBOARD_UP_MS, 10_000),
}
"""Goals stated for a size: the metric whose section's parameters give the size measured (:func:`_size_measured`)."""


def _size_measured(params: dict[str, Any]) -> int | None:
    """The size a section measured its goal at: its ``instances``, else the largest of its ``sizes``."""
    instances = params.get("instances")
    if isinstance(instances, int):
        return instances
    sizes = params.get("sizes")
    return max(sizes) if isinstance(sizes, list) and sizes else None


def evaluate_goals(workloads: Workloads, backends: list[str]) -> list[dict[str, Any]]:
    """Every goal's verdict per backend, with how many backends meet it."""
    goals: list[dict[str, Any]] = []
    for key, title, judge in GOALS:
        verdicts = {backend: judge(workloads, backend) for backend in backends}
        measured = [v for v in verdicts.values() if v["met"] is not None]
        goals.append(
            {
                "goal": key,
                "title": title,
                "backends": verdicts,
                "met": sum(1 for v in measured if v["met"]),
                "measured": len(measured),
            }
        )
    for goal in goals:
        if goal["goal"] in _SIZES:
            metric, size = _SIZES[goal["goal"]]
            instances = _size_measured(workloads.get(metric.section, {}).get("params", {}))
            if instances is not None and instances != size:
                goal["note"] = f"measured with {instances:,} instances"
    return goals
