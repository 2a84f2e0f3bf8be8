"""Small statistics for the benchmark: percentiles of latency samples and the median and range of rounds.

Kept free of numpy so the core of the report needs nothing beyond the standard
library. Percentiles interpolate linearly between the two nearest ranks, the
same rule as ``numpy.percentile``'s default, so a p99 of 200 samples is an
honest estimate rather than always the largest value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolated between ranks.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(values: Sequence[float]) -> dict[str, float | int]:
    """The median, minimum and maximum of the observations, and how many there were.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("summary of no values")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the denominator is zero."""
    return numerator / denominator if denominator else None
