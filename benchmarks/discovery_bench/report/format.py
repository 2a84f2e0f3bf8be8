"""How numbers read in the report, the terminal summary and the README: values, ranges, headline rows.

One place decides how a metric's cell reads (``545 (520-560) /s``, ``n/a``),
and which few figures are the headline, so the Markdown report, the rich
summary and the README section, all generated from ``report.json``, can
never disagree.
"""

from __future__ import annotations

import math
from typing import Any

Report = dict[str, Any]


def number(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, thousands separated, no trailing zeros (``27,806``, ``0.843``)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    text = f"{round(value, decimals):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def cell_text(cell: dict[str, Any] | None, metric: dict[str, Any], ranges: bool = True) -> str:
    """A metric's cell for one backend: median, then min-max when they differ; ``n/a`` with no value."""
    if not cell or "median" not in cell:
        return "n/a"
    digits = int(metric.get("digits", 3))
    unit = metric.get("unit", "")
    text = number(float(cell["median"]), digits)
    low, high = float(cell["min"]), float(cell["max"])
    if ranges and int(cell.get("n", 1)) > 1 and low != high:
        text += f" ({number(low, digits)}-{number(high, digits)})"
    return f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}"


def na_reason(cell: dict[str, Any] | None) -> str:
    """Why a cell has no value."""
    return str((cell or {}).get("na", "not measured"))


def _metric(report: Report, section: str, key: str) -> dict[str, Any] | None:
    metric = report.get("workloads", {}).get(section, {}).get("metrics", {}).get(key)
    return metric if isinstance(metric, dict) else None


def _last_key(report: Report, section: str, prefix: str) -> str | None:
    keys = [k for k in report.get("workloads", {}).get(section, {}).get("metrics", {}) if k.startswith(prefix)]
    return keys[-1] if keys else None


def _first_key(report: Report, section: str, prefix: str) -> str | None:
    keys = [k for k in report.get("workloads", {}).get(section, {}).get("metrics", {}) if k.startswith(prefix)]
    return keys[0] if keys else None


def headline_rows(report: Report) -> list[tuple[str, dict[str, str]]]:
    """The headline figures: (row label, per-backend text), in the order they are shown."""
    wanted: list[tuple[str, str | None]] = [
        ("register", "registry_c1"),
        ("register", "registry_c8"),
        ("register", "ratio_c1"),
        ("propagation", "p99_ms_1000"),
        ("propagation", "p99_vs_raw_1000"),
        ("burst", "delivered"),
        ("burst", "naive_delivered"),
        ("detection", _first_key(report, "detection", "detect_s_ttl")),
        ("keepalive", _last_key(report, "keepalive", "requests_per_s_")),
        ("keepalive", _last_key(report, "keepalive", "cpu_pct_")),
        ("resync", "gap_converged_s"),
        ("memory", "rss_mb_per_10k_registered"),
    ]
    backends = list(report.get("backends", {}))
    rows: list[tuple[str, dict[str, str]]] = []
    for section, key in wanted:
        metric = _metric(report, section, key) if key else None
        if metric is None:
            continue
        label = metric["label"]
        if section == "resync":
            label = f"resync of {report['workloads']['resync']['params'].get('instances', 0):,} instances, converged"
        cells = {b: cell_text(metric["backends"].get(b), metric, ranges=False) for b in backends}
        rows.append((label, cells))
    return rows
