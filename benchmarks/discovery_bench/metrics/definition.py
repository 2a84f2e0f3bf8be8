"""What a metric is: key, label, unit, per-round statistic (:class:`PerRound`) and aggregation over rounds.

A metric measured at several rates, sizes or ttls is a family: ``{}`` in its
key and label, and a ``param`` that turns the rate, size or ttl into the key's
tag and the label's text; :meth:`Metric.at` makes the member. How the rounds
become the figure is the same for every metric and defined here, in
:meth:`Metric.summarise` (the median of every observation, min-max as the
range) and :meth:`Metric.worst_round` (the min when higher is better, else the
max). The same object reads its cells back from ``report.json``
(:meth:`Metric.cell`, :meth:`Metric.keys`), so what was filed under a key is
found under it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from discovery_bench.stats import percentile, summarise

Better = Literal["higher", "lower", ""]
Cell = dict[str, Any]


@dataclass(frozen=True)
class PerRound:
    """How one round's measurement becomes what that round contributes to a metric.

    Attributes:
        describe: how the report explains it.
        reduce: the round's samples to the round's observations (none: no value this round).
        ratio: for a ratio of two metrics of the same round, their keys (numerator, denominator).
    """

    describe: str
    reduce: Callable[[Sequence[float]], list[float]] = list
    ratio: tuple[str, str] | None = None

    def at(self, tag: str) -> PerRound:
        """The same statistic for one member of a family (a ratio's operands get the tag too)."""
        if self.ratio is None:
            return self
        numerator, denominator = (key.replace("{}", tag) for key in self.ratio)
        return replace(self, describe=self.describe.replace("{}", tag), ratio=(numerator, denominator))


def measured(what: str) -> PerRound:
    """One value per round, measured by the workload as ``what``."""
    return PerRound(what)


def each(what: str) -> PerRound:
    """Every repetition within a round is one observation."""
    return PerRound(f"every {what}")


def percentile_of(q: float, samples: str) -> PerRound:
    """The ``q``-th percentile of the round's ``samples``."""
    return PerRound(f"p{q:g} of the round's {samples}", lambda values: [percentile(values, q)] if values else [])


def largest(samples: str) -> PerRound:
    """The largest of the round's ``samples``."""
    return PerRound(f"the largest of the round's {samples}", lambda values: [max(values)] if values else [])


def ratio_of(numerator: Metric, denominator: Metric) -> PerRound:
    """``numerator ÷ denominator`` as both were measured in the same round (none when either is missing or 0)."""
    return PerRound(f"{numerator.key} ÷ {denominator.key} of the same round", ratio=(numerator.key, denominator.key))


@dataclass(frozen=True)
class Metric:
    """One number a workload reports per backend, or a family of them (``{}`` in key and label).

    Attributes:
        key: stable identifier in ``report.json``.
        label: row title in the report tables.
        unit: the unit shown after the value (``"/s"``, ``"ms"``, ``"s"``, ``""``).
        better: ``"higher"``, ``"lower"`` or ``""`` when neither.
        section: the report section (workload name) it is filed under; the
            producing workload's own when empty.
        digits: significant digits to show.
        per_round: how one round's measurement becomes the round's observations.
        param: for a family, the parameter (rate, size, ttl...) to ``(key tag, label text)``.
    """

    key: str
    label: str
    unit: str = ""
    better: Better = ""
    section: str = ""
    digits: int = 3
    per_round: PerRound = PerRound("the round's value")
    param: Callable[[Any], tuple[str, str]] | None = None

    over_rounds: ClassVar[str] = "median over rounds, then (min-max) when rounds differ"
    """How the rounds become the figure, for every metric (see :meth:`summarise`)."""

    def at(self, value: Any) -> Metric:
        """The family's metric for one rate, size, ttl or count ``value``.

        Raises:
            ValueError: this metric is not a family.
        """
        if self.param is None:
            raise ValueError(f"{self.key} is not a family")
        tag, text = self.param(value)
        return replace(
            self,
            key=self.key.replace("{}", tag),
            label=self.label.replace("{}", text),
            per_round=self.per_round.at(tag),
            param=None,
        )

    def key_at(self, tag: str) -> str:
        """The key of the family's member whose key tag is ``tag`` (as ``report.json`` records it)."""
        return self.key.replace("{}", tag)

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this metric, or a member of this family."""
        if "{}" not in self.key:
            return key == self.key
        prefix, suffix = self.key.split("{}", 1)
        return len(key) > len(prefix) + len(suffix) and key.startswith(prefix) and key.endswith(suffix)

    def summarise(self, values: Sequence[float]) -> dict[str, float | int]:
        """The figure over rounds: the median of the observations, their min and max, and how many.

        Raises:
            ValueError: ``values`` is empty.
        """
        return summarise(values)

    def worst(self, values: Sequence[float]) -> float:
        """The worst of ``values``: the smallest when higher is better, else the largest."""
        return min(values) if self.better == "higher" else max(values)

    def worst_round(self, cell: Cell) -> float:
        """The worst round of a summarised cell (its min when higher is better, else its max)."""
        return float(cell["min"] if self.better == "higher" else cell["max"])

    def keys(self, workloads: Mapping[str, Any]) -> list[str]:
        """The keys of this metric present in ``report.json``'s workloads, in report order."""
        return [key for key in workloads.get(self.section, {}).get("metrics", {}) if self.matches(key)]

    def cell(self, workloads: Mapping[str, Any], backend: str, key: str | None = None) -> Cell | None:
        """The summarised cell of ``backend`` (of member ``key`` of a family), or None when it has no value."""
        entry = workloads.get(self.section, {}).get("metrics", {}).get(key or self.key, {})
        cell = entry.get("backends", {}).get(backend)
        return cell if isinstance(cell, dict) and "median" in cell else None

    def cells(self, workloads: Mapping[str, Any], backend: str) -> list[Cell]:
        """The cells with a value of every member of this metric, in report order."""
        found = (self.cell(workloads, backend, key) for key in self.keys(workloads))
        return [cell for cell in found if cell is not None]
