"""How each figure is computed, in one place: the :class:`Metric` type and the catalogue of every metric.

:mod:`~discovery_bench.metrics.definition` says what a metric is (key, label,
unit, per-round statistic, aggregation over rounds);
:mod:`~discovery_bench.metrics.catalogue` declares every metric the
benchmark reports, which the workloads record through and the report, plots,
goals and README section read through.
"""

from discovery_bench.metrics.definition import Metric, PerRound, each, largest, measured, percentile_of, ratio_of

__all__ = ["Metric", "PerRound", "each", "largest", "measured", "percentile_of", "ratio_of"]
