"""The report files: ``report.json`` (everything, the source of the rest) and ``report.md`` rendered from it.

``report.json`` holds the run (profile, duration, whether it was
interrupted), the machine, the backends measured and those skipped with the
reason, every workload's metrics per backend (median, min, max and every
observation, or why there is none), latency samples for the plots, the goals'
verdicts, the parity table and the plots' file names. ``report.md`` is a
pure function of it: goals, then one table per workload with the backends
side by side, the plots, the parity table and the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from discovery.bench._format import cell_text, headline_rows, na_reason
from discovery.bench._parity import NO_RESULTS

Report = dict[str, Any]
SCHEMA = 1

# Which plot illustrates which section.
PLOT_SECTIONS = {
    "register": ["register_throughput.png"],
    "propagation": ["propagation_latency.png"],
    "burst": ["burst_completeness.png"],
    "detection": ["detection_vs_ttl.png"],
    "keepalive": ["keepalive_cost.png"],
}


def write_json(report: Report, path: Path) -> None:
    """Write ``report.json``."""
    path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def clean(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return lines


def _param(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return "; ".join(", ".join(f"{k} {v}" for k, v in item.items() if k != "tag") for item in value)
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _parity_cell(cell: dict[str, Any]) -> str:
    text = {"passed": "✅", "failed": "❌", "skipped": "skipped"}.get(str(cell.get("outcome", "")), "—")
    resyncs = cell.get("resyncs")
    if isinstance(resyncs, int) and resyncs:
        text += f" ({resyncs} resync{'s' if resyncs > 1 else ''})"
    return text


def _mark(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: "—"}[met]


def render_markdown(report: Report) -> str:
    """``report.md`` from the report."""
    backends = list(report.get("backends", {}))
    run = report.get("run", {})
    machine = report.get("machine", {})
    lines = [
        f"# discovery benchmark: profile `{run.get('profile', '?')}`",
        "",
        f"{machine.get('date', '')}, {run.get('duration_s', 0):.0f} s"
        + (" — **interrupted: partial results**" if run.get("interrupted") else "")
        + f". Machine: {machine.get('cpus', '?')} x {machine.get('cpu_model', '?')}, "
        f"{machine.get('memory_gib', '?')} GiB, {machine.get('os', '?')}; {machine.get('python', '?')}; "
        f"etcd {machine.get('etcd', '?')}, ZooKeeper {machine.get('zookeeper', '?')}.",
        "",
        "Each cell: median over rounds, then (min-max) when rounds differ. Regenerate with "
        f"`discovery bench --profile {run.get('profile', 'default')}`.",
        "",
    ]
    if report.get("skipped"):
        lines += ["Skipped backends:", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in report["skipped"].items()]
        lines.append("")
    lines += ["## Headline", ""]
    lines += _table(["", *backends], [[label, *(cells[b] for b in backends)] for label, cells in headline_rows(report)])
    lines += ["", "## Goals (measured, not asserted)", ""]
    goal_rows = []
    for goal in report.get("goals", []):
        cells = [f"{_mark(v['met'])} {v['display']}" for v in (goal["backends"].get(b, {}) for b in backends)]
        progress = f"{goal['met']} of {goal['measured']}" + (f" ({goal['note']})" if goal.get("note") else "")
        goal_rows.append([goal["title"], *cells, progress])
    lines += _table(["goal", *backends, "met"], goal_rows)
    for name, section in report.get("workloads", {}).items():
        lines += ["", f"## {section['title']}", "", section["description"], ""]
        params = section.get("params") or {}
        shown = {k: v for k, v in params.items() if not isinstance(v, dict)}
        if shown:
            lines += ["Parameters: " + ", ".join(f"{k} = {_param(v)}" for k, v in shown.items()), ""]
        rows = []
        for metric in section["metrics"].values():
            rows.append([metric["label"], *(cell_text(metric["backends"].get(b), metric) for b in backends)])
        lines += _table(["", *backends], rows)
        reasons = sorted(
            {
                f"{b}: {na_reason(metric['backends'].get(b))}"
                for metric in section["metrics"].values()
                for b in backends
                if "median" not in (metric["backends"].get(b) or {})
            }
        )
        if reasons:
            lines += ["", "n/a: " + "; ".join(reasons)]
        for backend, notes in section.get("notes", {}).items():
            for note in sorted(set(notes)):
                lines.append(f"- {backend}: {note}")
        for key, value in params.items():
            if isinstance(value, dict):
                lines += ["", f"{key}:", *(f"- {k}: {v}" for k, v in value.items())]
        for plot in PLOT_SECTIONS.get(name, []):
            if plot in report.get("plots", []):
                lines += ["", f"![{section['title']}]({plot})"]
    lines += ["", "## Parity: the conformance suite per backend", ""]
    parity = report.get("parity") or {"missing": NO_RESULTS}
    if "missing" in parity:
        lines.append(parity["missing"])
    else:
        columns = parity["backends"]
        rows = [
            [scenario, *(_parity_cell(cells.get(b, {})) for b in columns)]
            for scenario, cells in sorted(parity["scenarios"].items())
        ]
        lines += [f"From `{parity['source']}` (written by the suite's pytest plugin).", ""]
        lines += _table(["scenario", *columns], rows)
    lines += ["", "## Machine", ""]
    lines += _table(["", ""], [[key, str(value)] for key, value in machine.items()])
    lines += ["", "## Backends", ""]
    lines += _table(
        ["backend", "url", "server"],
        [[b, info.get("url", ""), info.get("server_version", "")] for b, info in report.get("backends", {}).items()],
    )
    return "\n".join(lines) + "\n"
