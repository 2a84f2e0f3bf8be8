"""``report.md``, rendered from ``report.json`` alone.

A pure function of the report: the headline, the goals, then one table per
workload with the backends side by side and how each figure is computed per
round, the plots, the parity table and the machine.
"""

from __future__ import annotations

from typing import Any

from discovery_bench.metrics import Metric
from discovery_bench.report.document import Report
from discovery_bench.report.format import cell_text, na_reason, verdict_text
from discovery_bench.report.headline import headline_rows
from discovery_bench.report.parity import NO_RESULTS

# Which plot illustrates which section.
PLOT_SECTIONS = {
    "register": ["register_throughput.png"],
    "propagation": ["propagation_latency.png"],
    "burst": ["burst_completeness.png"],
    "detection": ["detection_vs_ttl.png"],
    "keepalive": ["keepalive_cost.png"],
    "scale": ["scale_cost.png"],
}


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


_MARKS: dict[bool | None, str] = {True: "✅", False: "❌", None: "—"}


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
        f"Each cell: {Metric.over_rounds}; the last column says what one round contributes. Regenerate with "
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
        cells = [verdict_text(goal["backends"].get(b, {}), _MARKS) for b in backends]
        progress = f"{goal['met']} of {goal['measured']}" + (f" ({goal['note']})" if goal.get("note") else "")
        goal_rows.append([goal["title"], *cells, progress])
    lines += _table(["goal", *backends, "met"], goal_rows)
    for name, section in report.get("workloads", {}).items():
        lines += ["", f"## {section['title']}", "", section["description"], ""]
        params = section.get("params") or {}
        shown = {k: v for k, v in params.items() if not isinstance(v, dict)}
        if shown:
            lines += ["Parameters: " + ", ".join(f"{k} = {_param(v)}" for k, v in shown.items()), ""]
        rows = [
            [
                metric["label"],
                *(cell_text(metric["backends"].get(b), metric) for b in backends),
                metric.get("per_round", ""),
            ]
            for metric in section["metrics"].values()
        ]
        lines += _table(["", *backends, "per round"], rows)
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
