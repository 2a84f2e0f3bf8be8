"""How numbers read in the report, the terminal summary and the README: values, ranges, ``n/a``.

One place decides how a metric's cell reads (``545 (520-560) /s``, ``n/a``)
and how a goal's verdict reads (a mark and the figure, or ``n/a: why``), so
the Markdown report, the rich summary and the README section, all generated
from ``report.json``, can never disagree.
"""

from __future__ import annotations

import math
from typing import Any


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


def verdict_text(verdict: dict[str, Any], marks: dict[bool | None, str]) -> str:
    """A goal's verdict for one backend: its mark (``marks`` by met, missed, not measured) and the figure.

    A goal that does not apply to the backend reads ``n/a: why``, without a mark.
    """
    display = str(verdict.get("display", "not measured"))
    if "na" in verdict:
        return display
    return f"{marks[verdict.get('met')]} {display}"
