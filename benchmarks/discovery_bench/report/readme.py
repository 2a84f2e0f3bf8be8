"""Regenerate the README's benchmark section from ``report.json``, never by hand.

``discovery readme`` finds :func:`bench_section` through the
``discovery.readme_sections`` entry point, gives it the report's path and
the README's directory, and puts what it returns between the
``<!-- bench:start -->`` and ``<!-- bench:end -->`` lines of the README: the
headline figures, the goals, the scale workload's knee and per-step costs
(:func:`scale_table`), and the machine they came from, all read from the
report. The report's directory is git-ignored, so the scale plot the report
drew (``scale_cost.png``) is copied beside the README, to
:data:`PLOT_DIR`, and linked from there; a report without it gets no image
and nothing is copied. Rendering the same report twice gives the same text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.report.format import cell_text, na_reason, number, verdict_text
from discovery_bench.report.headline import headline_rows

__all__ = ["PLOT_DIR", "SCALE_PLOT", "bench_section", "render_section", "scale_table"]

SCALE_PLOT = "scale_cost.png"
"""The scale workload's plot, as the report names it (:func:`discovery_bench.report.plots.make_plots`)."""
PLOT_DIR = PurePosixPath("docs/bench")
"""Where, relative to the README's directory, the README's copy of the plot is kept (committed)."""

_NOT_MEASURED = "not measured"
_STEP_FIGURES: tuple[Metric, ...] = (m.SCALE_REQUESTS_PER_S, m.SCALE_CPU_PCT, m.SCALE_RESYNC_S)
"""The figures of a step in the README, in the order its cell gives them."""


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _steps(section: dict[str, Any]) -> list[str]:
    """The scale steps' key tags (instance counts), from the parameters or else from the metrics recorded."""
    steps = section.get("params", {}).get("steps")
    if isinstance(steps, list) and steps:
        return [str(step) for step in steps]
    prefix = m.SCALE_EXPIRED.key.split("{}")[0]
    return [key[len(prefix) :] for key in section.get("metrics", {}) if m.SCALE_EXPIRED.matches(key)]


def _count(tag: str) -> str:
    return f"{int(tag):,}" if tag.isdigit() else tag


def _knee_na(workloads: dict[str, Any], backend: str) -> str | None:
    """Why the scale workload does not apply to ``backend`` (the knee's recorded reason), or None."""
    entry = workloads.get(m.SCALE_KNEE.section, {}).get("metrics", {}).get(m.SCALE_KNEE.key, {})
    cell = entry.get("backends", {}).get(backend) if isinstance(entry, dict) else None
    return na_reason(cell) if isinstance(cell, dict) and "na" in cell and "median" not in cell else None


def _knee_text(workloads: dict[str, Any], backend: str) -> str:
    """``3,000 (lost 12 at 10,000)``, ``≥ 10,000 (every step held)``, or not measured."""
    knee = m.SCALE_KNEE.cell(workloads, backend)
    if knee is None:
        return _NOT_MEASURED
    held = number(float(knee["median"]))
    limit = m.SCALE_LIMIT.cell(workloads, backend)
    if limit is None:
        return f"≥ {held} (every step held)"
    step = float(limit["median"])  # a median over rounds: a step, or between two when the rounds differ
    at = number(step)
    expired = m.SCALE_EXPIRED.cell(workloads, backend, m.SCALE_EXPIRED.key_at(str(int(step))))
    if expired is not None and step.is_integer() and float(expired["median"]) > 0:
        return f"{held} (lost {number(float(expired['median']))} at {at})"
    if any(float(cell["max"]) > 0 for cell in m.SCALE_EXPIRED.cells(workloads, backend)):
        return f"{held} (lost instances at {at})"
    return f"{held} (the step of {at} failed)"


def _step_text(workloads: dict[str, Any], backend: str, tag: str) -> str:
    """A step's figures joined by `` · ``; one missing reads not measured, a step past the limit not reached."""
    texts: list[str | None] = []
    for metric in _STEP_FIGURES:
        entry = workloads.get(metric.section, {}).get("metrics", {}).get(metric.key_at(tag))
        cell = metric.cell(workloads, backend, metric.key_at(tag))
        texts.append(cell_text(cell, entry, ranges=False) if isinstance(entry, dict) and cell is not None else None)
    if any(text is not None for text in texts):
        return " · ".join(text or _NOT_MEASURED for text in texts)
    limit = m.SCALE_LIMIT.cell(workloads, backend)
    if limit is not None and tag.isdigit() and int(tag) > float(limit["median"]):
        return "not reached"
    return _NOT_MEASURED


def scale_table(report: dict[str, Any]) -> list[str]:
    """The README's scale part: a line saying what is shown, one row per backend, or that it was not measured."""
    workloads = report.get("workloads", {})
    section = workloads.get(m.SCALE_KNEE.section)
    backends = list(report.get("backends", {}))
    if not isinstance(section, dict) or not backends:
        return [f"**Scale** (the most instances one process keeps alive, and what each step costs): {_NOT_MEASURED}."]
    steps = _steps(section)
    params = section.get("params", {})
    ttl = params.get("ttl_s")
    hold = params.get("hold_s")
    at = f" at ttl {ttl:g} s" if isinstance(ttl, int | float) else ""
    held = f", each step held idle for {hold:g} s" if isinstance(hold, int | float) else ""
    lines = [
        f"**Scale**: the knee is the most instances one process kept alive{at} with zero expiries{held}; "
        "per step (live instances): keep-alive server requests/s · the holder's (client) CPU · "
        "`request_resync()` → `RESYNCED`.",
        "",
        _row(["", "knee", *(_count(tag) for tag in steps)]),
        "|" + "---|" * (len(steps) + 2),
    ]
    for backend in backends:
        if (why := _knee_na(workloads, backend)) is not None:
            lines.append(_row([backend, f"n/a: {why}", *("n/a" for _ in steps)]))
        else:
            cells = [_step_text(workloads, backend, tag) for tag in steps]
            lines.append(_row([backend, _knee_text(workloads, backend), *cells]))
    return lines


def render_section(
    report: dict[str, Any], source: str = "bench-report/report.json", scale_plot: str | None = None
) -> str:
    """The section's Markdown (without the markers) for ``report``.

    Args:
        report: the report, as ``report.json`` holds it.
        source: the report's path, for the line that says how the section was generated.
        scale_plot: the scale plot's path relative to the README (``docs/bench/scale_cost.png``), if it has one.
    """
    backends = list(report.get("backends", {}))
    machine = report.get("machine", {})
    run = report.get("run", {})
    lines = [
        f"<!-- generated by `discovery readme README.md --report {source}`; do not edit by hand -->",
        "",
        f"Measured with `discovery bench --profile {run.get('profile', '?')}` on {machine.get('date', '?')}: "
        f"{machine.get('cpus', '?')} x {machine.get('cpu_model', '?')}, {machine.get('memory_gib', '?')} GiB, "
        f"{machine.get('os', '?')}, {machine.get('python', '?')}, etcd {machine.get('etcd', '?')}, "
        f"ZooKeeper {machine.get('zookeeper', '?')}; {run.get('duration_s', 0):.0f} s"
        + (" (interrupted: partial results)" if run.get("interrupted") else "")
        + ". Medians over rounds; the full report has the ranges, plots and the parity table.",
        "",
    ]
    if backends:
        lines += [_row(["", *backends]), "|" + "---|" * (len(backends) + 1)]
        lines += [_row([label, *(cells[b] for b in backends)]) for label, cells in headline_rows(report)]
        goals = report.get("goals", [])
        if goals:
            lines += ["", _row(["goal (measured, not asserted)", *backends]), "|" + "---|" * (len(backends) + 1)]
            marks: dict[bool | None, str] = {True: "✅", False: "❌", None: "—"}
            for goal in goals:
                cells = [
                    verdict_text(goal["backends"].get(b, {"met": None, "display": "not measured"}), marks)
                    for b in backends
                ]
                lines.append(_row([goal["title"] + (f" ({goal['note']})" if goal.get("note") else ""), *cells]))
        lines += ["", *scale_table(report)]
        if scale_plot is not None:
            lines += [
                "",
                f"![Scale: cost against live instances, log axes]({scale_plot})",
            ]
    else:
        lines.append("No backend was measured.")
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"\nSkipped {name}: {reason}")
    return "\n".join(lines)


def _copy_plot(report: dict[str, Any], directory: Path, readme_dir: Path) -> str | None:
    """Copy the report's scale plot beside the README; its path relative to the README, or None without one."""
    source = directory / SCALE_PLOT
    if SCALE_PLOT not in report.get("plots", []) or not source.is_file():
        return None
    target = readme_dir / PLOT_DIR / SCALE_PLOT
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    return str(PLOT_DIR / SCALE_PLOT)


def bench_section(report: Path, readme_dir: Path) -> str | None:
    """The section's Markdown rendered from the ``report.json`` at ``report``, or None when there is none.

    The report's scale plot, when it drew one, is copied to :data:`PLOT_DIR`
    under ``readme_dir`` (the README's directory) and linked from there.

    Raises:
        OSError: the report exists but cannot be read, or the plot cannot be copied.
        ValueError: the report is not JSON.
    """
    if not report.is_file():
        return None
    document = json.loads(report.read_text())
    plot = _copy_plot(document, report.parent, readme_dir)
    return render_section(document, str(report), plot)
