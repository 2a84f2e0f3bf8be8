"""The project's goals, measured per backend: shown as progress in the report, never asserted.

Each goal reads the workloads' results in ``report.json`` form, so the README
renderer can show the same verdicts from the file alone. A goal is met,
missed, or not measured (its workload did not run on that backend); never
guessed. The goals:

- no event lost in any workload (propagation, burst, failure detection, resync);
- registry ÷ raw client registration rate at least 0.9;
- watch p99 within 1.5x the raw client's watch on the same server;
- failure detection within ttl + 1 s;
- a 10,000-instance resync converged within 2 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Workloads = dict[str, Any]
Verdict = dict[str, Any]


def _cell(workloads: Workloads, section: str, key: str, backend: str) -> dict[str, Any] | None:
    cell = workloads.get(section, {}).get("metrics", {}).get(key, {}).get("backends", {}).get(backend)
    return cell if isinstance(cell, dict) and "median" in cell else None


def _keys(workloads: Workloads, section: str, prefix: str) -> list[str]:
    return [key for key in workloads.get(section, {}).get("metrics", {}) if key.startswith(prefix)]


def _median(workloads: Workloads, section: str, key: str, backend: str) -> float | None:
    cell = _cell(workloads, section, key, backend)
    return float(cell["median"]) if cell is not None else None


def _events_lost(workloads: Workloads, backend: str) -> Verdict:
    lost = 0.0
    measured = False
    for entry in workloads.get("propagation", {}).get("params", {}).get("rates", []):
        cell = _cell(workloads, "propagation", f"delivered_{entry['tag']}", backend)
        if cell is not None:
            measured = True
            lost += round((1 - float(cell["min"])) * int(entry["writes"]))
    counted = [("burst", "lost"), ("resync", "gap_missing")]
    counted += [("detection", key) for key in _keys(workloads, "detection", "missed_ttl")]
    for section, key in counted:
        cell = _cell(workloads, section, key, backend)
        if cell is not None:
            measured = True
            lost += float(cell["max"])
    if not measured:
        return {"met": None, "value": None, "display": "not measured"}
    return {"met": lost == 0, "value": lost, "display": f"{lost:,.0f} lost"}


def _worst(
    workloads: Workloads, backend: str, section: str, prefix: str, pick: Callable[[list[float]], float]
) -> float | None:
    values = [_median(workloads, section, key, backend) for key in _keys(workloads, section, prefix)]
    present = [value for value in values if value is not None]
    return pick(present) if present else None


def _threshold(value: float | None, ok: Callable[[float], bool], display: Callable[[float], str]) -> Verdict:
    if value is None:
        return {"met": None, "value": None, "display": "not measured"}
    return {"met": ok(value), "value": value, "display": display(value)}


GOALS: list[tuple[str, str, Callable[[Workloads, str], Verdict]]] = [
    ("events", "0 events lost in every workload", _events_lost),
    (
        "register_ratio",
        "registry ÷ raw registration rate ≥ 0.9",
        lambda w, b: _threshold(_worst(w, b, "register", "ratio_c", min), lambda v: v >= 0.9, lambda v: f"{v:.3f}"),
    ),
    (
        "watch_p99",
        "watch p99 ≤ 1.5 x raw client's",
        lambda w, b: _threshold(
            _worst(w, b, "propagation", "p99_vs_raw_", max), lambda v: v <= 1.5, lambda v: f"{v:.2f}x"
        ),
    ),
    (
        "detection",
        "failure detection ≤ ttl + 1 s",
        lambda w, b: _threshold(
            _worst(w, b, "detection", "excess_s_ttl", max), lambda v: v <= 1.0, lambda v: f"ttl {v:+.2f} s"
        ),
    ),
    (
        "resync",
        "10,000-instance resync ≤ 2 s",
        lambda w, b: _threshold(_median(w, "resync", "gap_converged_s", b), lambda v: v <= 2.0, lambda v: f"{v:.2f} s"),
    ),
]


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
    instances = workloads.get("resync", {}).get("params", {}).get("instances")
    if isinstance(instances, int) and instances != 10_000:
        goals[-1]["note"] = f"measured with {instances:,} instances"
    return goals
