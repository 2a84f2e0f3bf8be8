"""The report's plots, drawn with matplotlib's Agg canvas from ``report.json`` data alone.

Six figures: registration throughput bars (registry against raw client at
each concurrency, the raw client's pipelined writes where measured, and
register_many; min-max as error bars), the latency distribution of watch propagation per
backend and rate (registry solid, raw client dashed), burst completeness
against the naive loop, keep-alive cost against instance count on log axes,
detection time against ttl with the ttl and ttl + 1 s lines, and the scale
workload's cost of each step against N on log axes (keep-alive requests/s,
client and server CPU, resync, snapshot, registration rate; a cross marks
the first step that lost instances) with the fan-out's p99 against watchers. A figure
whose data is missing (its workload did not run) is not drawn. Figures are
built with ``matplotlib.figure.Figure``, never pyplot, so no display and no
global state are involved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from discovery_bench.harness.targets import base_label
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.document import Report

_COLOURS = {"memory": "#7f7f7f", "etcd": "#1f77b4", "etcd2": "#2ca02c", "zookeeper": "#d62728"}


def _colour(backend: str) -> str:
    return _COLOURS.get(base_label(backend), "#9467bd")


def _save(figure: Figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path.name


def _register(report: Report, backends: list[str], out: Path) -> str | None:
    workloads = report.get("workloads", {})
    section = workloads.get(m.REGISTRY_RATE.section)
    if not section:
        return None
    drawn_metrics = (m.REGISTRY_RATE, m.RAW_RATE, m.REGISTER_MANY_RATE, m.RAW_ASYNC_RATE)
    series = [(key, metric) for key in section["metrics"] for metric in drawn_metrics if metric.matches(key)]
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    drawn = False
    for i, (key, metric) in enumerate(series):
        xs, heights, low, high = [], [], [], []
        for j, backend in enumerate(backends):
            cell = metric.cell(workloads, backend, key)
            if cell is None:
                continue
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            heights.append(cell["median"])
            low.append(cell["median"] - cell["min"])
            high.append(cell["max"] - cell["median"])
        if xs:
            drawn = True
            hatch = "//" if metric in (m.RAW_RATE, m.RAW_ASYNC_RATE) else None
            axes.bar(xs, heights, width, yerr=[low, high], label=section["metrics"][key]["label"], hatch=hatch)
    if not drawn:
        return None
    axes.set_xticks(range(len(backends)), backends)
    axes.set_yscale("log")
    axes.set_ylabel("registrations per second (log)")
    axes.set_title("Registration throughput: registry vs raw client")
    axes.legend(fontsize="small")
    return _save(figure, out / "register_throughput.png")


def _propagation(report: Report, backends: list[str], out: Path) -> str | None:
    section = report.get("workloads", {}).get(m.P99_MS.section)
    if not section or not section.get("samples"):
        return None
    rates = section["params"].get("rates", [])
    figure = Figure(figsize=(4.5 * max(1, len(rates)), 4))
    for i, entry in enumerate(rates, 1):
        axes = figure.add_subplot(1, len(rates), i)
        for backend in backends:
            for series, style, label in (
                (m.LATENCY_SERIES, "-", backend),
                (m.RAW_LATENCY_SERIES, "--", f"{backend} raw"),
            ):
                samples = sorted(section["samples"].get(series.format(entry["tag"]), {}).get(backend, []))
                if not samples:
                    continue
                fractions = [(k + 1) / len(samples) for k in range(len(samples))]
                axes.plot(samples, fractions, style, color=_colour(backend), label=label, linewidth=1.2)
        axes.set_xscale("log")
        axes.set_xlabel("write → consumer latency, ms (log)")
        axes.set_ylabel("fraction of events")
        axes.set_title(f"rate {entry['rate']}")
        axes.grid(True, which="both", alpha=0.3)
        if i == 1:
            axes.legend(fontsize="x-small")
    return _save(figure, out / "propagation_latency.png")


def _burst(report: Report, backends: list[str], out: Path) -> str | None:
    workloads = report.get("workloads", {})
    if m.BURST_DELIVERED.section not in workloads:
        return None
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot()
    drawn = False
    for offset, metric, label in (
        (-0.2, m.BURST_DELIVERED, "discovery watch"),
        (0.2, m.NAIVE_DELIVERED, "naive re-watch loop"),
    ):
        xs, heights = [], []
        for j, backend in enumerate(backends):
            cell = metric.cell(workloads, backend)
            if cell is not None:
                xs.append(j + offset)
                heights.append(cell["median"])
        if xs:
            drawn = True
            axes.bar(xs, heights, 0.4, label=label)
    if not drawn:
        return None
    axes.set_xticks(range(len(backends)), backends)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("events delivered ÷ 2N")
    axes.set_title("Burst: N registered, then all expire")
    axes.legend(fontsize="small")
    return _save(figure, out / "burst_completeness.png")


def _keepalive(report: Report, backends: list[str], out: Path) -> str | None:
    workloads = report.get("workloads", {})
    section = workloads.get(m.REQUESTS_PER_S.section)
    if not section:
        return None
    sizes = section["params"].get("sizes", [])
    figure = Figure(figsize=(10, 4))
    drawn = False
    for i, (metric, ylabel) in enumerate(((m.REQUESTS_PER_S, "server requests/s"), (m.CPU_PCT, "client CPU, %")), 1):
        axes = figure.add_subplot(1, 2, i)
        lowest = float("inf")
        for backend in backends:
            points = [(n, c["median"]) for n in sizes if (c := metric.cell(workloads, backend, metric.key_at(str(n))))]
            if points:
                drawn = True
                lowest = min(lowest, *(y for _, y in points))
                axes.plot(*zip(*points, strict=True), "o-", color=_colour(backend), label=backend)
        _log_scale(axes, lowest)
        axes.set_xlabel("live instances (log)")
        axes.set_ylabel(f"{ylabel} (log)")
        if axes.get_lines():
            axes.legend(fontsize="small")
    if not drawn:
        return None
    figure.suptitle("Keep-alive cost against live instances")
    return _save(figure, out / "keepalive_cost.png")


def _log_scale(axes: Any, lowest: float) -> None:
    """Log axes; a symmetric log y axis when a value is 0 (a log axis cannot show it)."""
    axes.set_xscale("log")
    if lowest > 0:
        axes.set_yscale("log")
    else:
        axes.set_yscale("symlog", linthresh=0.1)
        axes.set_ylim(bottom=0)
    axes.grid(True, which="both", alpha=0.3)


def _scale(report: Report, backends: list[str], out: Path) -> str | None:
    workloads = report.get("workloads", {})
    section = workloads.get(m.SCALE_KNEE.section)
    if not section:
        return None
    steps = section["params"].get("steps", [])
    watchers = section["params"].get("fanout_watchers", [])
    panels: list[tuple[Metric, list[int], str]] = [(metric, steps, "live instances") for metric in m.SCALE_SERIES]
    panels.append((m.FANOUT_P99_MS, watchers, f"watchers over {section['params'].get('fanout_instances', 0):,}"))
    figure = Figure(figsize=(13, 7.5))
    drawn = False
    for i, (metric, sizes, xlabel) in enumerate(panels, 1):
        axes = figure.add_subplot(2, 4, i)
        lowest = float("inf")
        for backend in backends:
            points = [(n, c["median"]) for n in sizes if (c := metric.cell(workloads, backend, metric.key_at(str(n))))]
            if not points:
                continue
            drawn = True
            lowest = min(lowest, *(y for _, y in points))
            axes.plot(*zip(*points, strict=True), "o-", color=_colour(backend), label=backend, markersize=4)
            limit = m.SCALE_LIMIT.cell(workloads, backend)
            failed = [(n, y) for n, y in points if limit is not None and n == limit["median"]]
            if failed and metric in m.SCALE_SERIES:
                axes.plot(*zip(*failed, strict=True), "x", color="black", markersize=10, markeredgewidth=2)
        _log_scale(axes, lowest)
        axes.set_title(metric.label.split("{}")[0].rstrip(", "), fontsize="small")
        axes.set_xlabel(f"{xlabel} (log)", fontsize="small")
        axes.set_ylabel(metric.unit or "count", fontsize="small")
        if axes.get_lines():
            axes.legend(fontsize="x-small")
    if not drawn:
        return None
    _knees(figure.add_subplot(2, 4, 8), workloads, backends, steps)
    ttl = section["params"].get("ttl_s", "?")
    figure.suptitle(f"Scale: cost against live instances at ttl {ttl} s (x: the first step that lost instances)")
    return _save(figure, out / "scale_cost.png")


def _knees(axes: Any, workloads: dict[str, Any], backends: list[str], steps: list[int]) -> None:
    """The knee of each backend as a bar, labelled with what stopped it (or that every step held)."""
    for j, backend in enumerate(backends):
        knee = m.SCALE_KNEE.cell(workloads, backend)
        if knee is None:
            continue
        limit = m.SCALE_LIMIT.cell(workloads, backend)
        value = float(knee["median"])
        text = f"{value:,.0f}\nlost at {float(limit['median']):,.0f}" if limit else f"≥ {value:,.0f}\nall held"
        axes.bar(j, max(value, 1.0), 0.6, color=_colour(backend))
        axes.annotate(text, (j, max(value, 1.0)), ha="center", va="bottom", fontsize="x-small")
    axes.set_xticks(range(len(backends)), backends, fontsize="small")
    axes.set_yscale("log")
    axes.set_ylim(bottom=max(1.0, min(steps or [3]) / 3), top=max(steps or [10]) * 4)
    axes.set_title("knee: most instances held, zero expiries", fontsize="small")
    axes.set_ylabel("instances (log)", fontsize="small")


def _detection(report: Report, backends: list[str], out: Path) -> str | None:
    workloads = report.get("workloads", {})
    section = workloads.get(m.DETECT_S.section)
    if not section:
        return None
    ttls = section["params"].get("ttls_s", [])
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    drawn = False
    for j, backend in enumerate(backends):
        xs, ys = [], []
        for ttl in ttls:
            cell = m.DETECT_S.cell(workloads, backend, m.DETECT_S.key_at(m.ttl_tag(ttl)))
            for value in (cell or {}).get("values", []):
                xs.append(ttl + (j - (len(backends) - 1) / 2) * 0.08)
                ys.append(value)
        if xs:
            drawn = True
            axes.scatter(xs, ys, color=_colour(backend), label=backend, s=18)
    if not drawn:
        return None
    line = [min(ttls) - 0.5, max(ttls) + 0.5]
    axes.plot(line, line, ":", color="black", label="ttl")
    axes.plot(line, [x + 1 for x in line], "--", color="black", label="ttl + 1 s (goal)")
    axes.set_xlabel("ttl, s")
    axes.set_ylabel("SIGKILL → REMOVED delivered, s")
    axes.set_title("Failure detection against ttl")
    axes.legend(fontsize="small")
    return _save(figure, out / "detection_vs_ttl.png")


def make_plots(report: Report, out: Path) -> list[str]:
    """Draw every plot the report has data for into ``out``; return the file names."""
    backends = list(report.get("backends", {}))
    names = []
    for draw in (_register, _propagation, _burst, _keepalive, _detection, _scale):
        name = draw(report, backends, out)
        if name is not None:
            names.append(name)
    return names
