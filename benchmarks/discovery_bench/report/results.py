"""The results model: what each round observed, gathered for the whole run into ``report.json``'s workloads.

A workload declares its metrics (:class:`~discovery_bench.metrics.Metric`,
from the catalogue). One round on one backend returns an
:class:`Observations`: the round's samples reduced by each metric's own
per-round statistic (several values where a round repeats a measurement,
like the failure-detection kills), metrics that do not apply to this backend
with the reason, latency samples for the plots, and notes; ratios of two
metrics of the same round are derived when the round is filed.
:class:`ResultSet` gathers them for the whole run and turns them into the JSON
document of ``report.json``, each cell summarised by its metric; a metric
without a value always says why, so the report never shows a blank where a
number belongs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from discovery_bench.metrics import Metric
from discovery_bench.stats import ratio


def _key(metric: Metric | str) -> str:
    return metric if isinstance(metric, str) else metric.key


@dataclass
class Observations:
    """What one round of one workload observed on one backend.

    Attributes:
        values: per metric key, the values observed in this round.
        unavailable: per metric key, why it does not apply to this backend.
        samples: per series name, raw samples for the plots (latencies in ms...).
        notes: remarks for the report (resync reasons, lost sessions...), per section
            (``""``: the producing workload's own).
        failures: per metric key, why its measurement failed in this round
            (the round's other metrics stand).
    """

    values: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def note(self, text: str, section: str = "") -> None:
        """Add a remark for the report, under ``section`` (the producing workload's own by default)."""
        self.notes.setdefault(section, []).append(text)

    def observe(self, metric: Metric, samples: Sequence[float], reason: str = "no value") -> None:
        """Record the round's ``samples`` for ``metric``, reduced by its per-round statistic.

        When that leaves nothing (no samples), ``reason`` says why there is no value.
        """
        observations = metric.per_round.reduce(samples)
        if observations:
            self.values.setdefault(metric.key, []).extend(float(value) for value in observations)
        else:
            self.unavailable.setdefault(metric.key, reason)

    def add(self, metric: Metric | str, value: float | None, reason: str = "no value") -> None:
        """Record one measured ``value`` for ``metric``; None records ``reason`` as why there is none."""
        if value is None:
            self.unavailable.setdefault(_key(metric), reason)
        else:
            self.values.setdefault(_key(metric), []).append(float(value))

    def na(self, metric: Metric | str, reason: str) -> None:
        """Mark ``metric`` as not applicable here, with the reason."""
        self.unavailable[_key(metric)] = reason

    def derive(self, metrics: Sequence[Metric]) -> None:
        """Add the ratios among ``metrics`` from this round's values of their operands."""
        for metric in metrics:
            if metric.per_round.ratio is None or metric.key in self.values:
                continue
            numerator, denominator = (self.values.get(key, []) for key in metric.per_round.ratio)
            value = ratio(numerator[0], denominator[0]) if len(numerator) == len(denominator) == 1 else None
            self.add(metric, value)

    def failed(self, keys: list[str], message: str, section: str = "") -> None:
        """Record that measuring ``keys`` failed with ``message`` (shown as an error in the report)."""
        for key in keys:
            self.failures[key] = message
        self.note(f"error: {message}", section)


@dataclass
class _Cell:
    values: list[float] = field(default_factory=list)
    unavailable: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Section:
    """The results of one report section (usually one workload)."""

    name: str
    title: str
    description: str
    params: dict[str, Any]
    metrics: list[Metric]
    cells: dict[tuple[str, str], _Cell] = field(default_factory=dict)
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


class ResultSet:
    """Every section's observations for every backend of the run."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.sections: dict[str, Section] = {}

    def declare(self, name: str, title: str, description: str, params: dict[str, Any], metrics: list[Metric]) -> None:
        """Open a section with its metrics (declaring it again adds metrics)."""
        section = self.sections.get(name)
        if section is None:
            self.sections[name] = Section(name, title, description, dict(params), list(metrics))
            return
        known = {metric.key for metric in section.metrics}
        section.metrics.extend(metric for metric in metrics if metric.key not in known)
        section.params.update(params)

    def _cell(self, section: str, key: str, backend: str) -> _Cell:
        return self.sections[section].cells.setdefault((key, backend), _Cell())

    def record(self, workload: str, backend: str, observations: Observations, metrics: list[Metric]) -> None:
        """File one round's observations under each metric's section, with the ratios derived."""
        observations.derive(metrics)
        home = {metric.key: metric.section or workload for metric in metrics}
        for key, values in observations.values.items():
            self._cell(home.get(key, workload), key, backend).values.extend(values)
        for key, reason in observations.unavailable.items():
            cell = self._cell(home.get(key, workload), key, backend)
            if not cell.values:
                cell.unavailable = reason
        for key, message in observations.failures.items():
            self._cell(home.get(key, workload), key, backend).errors.append(message)
        for series, samples in observations.samples.items():
            self.sections[workload].samples.setdefault(series, {}).setdefault(backend, []).extend(samples)
        for section, notes in observations.notes.items():
            self.sections[section or workload].notes.setdefault(backend, []).extend(notes)

    def not_applicable(self, section: str, backend: str, reason: str) -> None:
        """Mark every metric of ``section`` as not applicable to ``backend``."""
        for metric in self.sections[section].metrics:
            self._cell(section, metric.key, backend).unavailable = reason

    def error(self, workload: str, backend: str, message: str, metrics: list[Metric]) -> None:
        """Record that a round failed on ``backend``; its metrics keep what other rounds measured."""
        for metric in metrics:
            self._cell(metric.section or workload, metric.key, backend).errors.append(message)
        self.sections[workload].notes.setdefault(backend, []).append(f"error: {message}")

    def to_json(self) -> dict[str, Any]:
        """The sections as the ``workloads`` part of ``report.json``."""
        document: dict[str, Any] = {}
        for name, section in self.sections.items():
            metrics: dict[str, Any] = {}
            for metric in section.metrics:
                per_backend: dict[str, Any] = {}
                for backend in self.backends:
                    per_backend[backend] = _cell_json(metric, section.cells.get((metric.key, backend)))
                metrics[metric.key] = {
                    "label": metric.label,
                    "unit": metric.unit,
                    "better": metric.better,
                    "digits": metric.digits,
                    "per_round": metric.per_round.describe,
                    "backends": per_backend,
                }
            document[name] = {
                "title": section.title,
                "description": section.description,
                "params": section.params,
                "metrics": metrics,
                "notes": section.notes,
                "samples": {
                    series: {backend: [round(v, 4) for v in values] for backend, values in by_backend.items()}
                    for series, by_backend in section.samples.items()
                },
            }
        return document


def _cell_json(metric: Metric, cell: _Cell | None) -> dict[str, Any]:
    if cell is None:
        return {"na": "not measured"}
    if cell.values:
        entry: dict[str, Any] = dict(metric.summarise(cell.values))
        entry["values"] = [round(value, 6) for value in cell.values]
        if cell.errors:
            entry["errors"] = cell.errors
        return entry
    if cell.errors:
        return {"na": f"failed: {cell.errors[-1]}", "errors": cell.errors}
    return {"na": cell.unavailable or "not measured"}
