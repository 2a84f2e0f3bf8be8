"""The terminal summary printed at the end of a run: headline figures and goals, with rich."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from discovery_bench.report.document import Report
from discovery_bench.report.format import verdict_text
from discovery_bench.report.headline import headline_rows


def _verdicts(goal: dict[str, Any], backends: list[str]) -> list[dict[str, Any]]:
    return [goal["backends"].get(b, {"met": None, "display": "not measured"}) for b in backends]


def print_summary(report: Report, console: Console, out: Path) -> None:
    """Print the headline table, the goals table and where the report went."""
    backends = list(report.get("backends", {}))
    run = report.get("run", {})
    title = f"discovery bench: profile {run.get('profile')}, {run.get('duration_s', 0):.0f} s"
    if run.get("interrupted"):
        title += " (interrupted: partial)"
    table = Table(title=title, show_lines=False)
    table.add_column("")
    for backend in backends:
        table.add_column(backend, justify="right")
    for label, cells in headline_rows(report):
        table.add_row(label, *(cells.get(b, "n/a") for b in backends))
    console.print(table)
    goals = Table(title="Goals (measured, not asserted)")
    goals.add_column("goal")
    for backend in backends:
        goals.add_column(backend, justify="right")
    goals.add_column("met", justify="right")
    marks: dict[bool | None, str] = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "-"}
    for goal in report.get("goals", []):
        verdicts = [verdict_text({**v, "display": escape(str(v["display"]))}, marks) for v in _verdicts(goal, backends)]
        title = goal["title"] + (f" ({goal['note']})" if goal.get("note") else "")
        goals.add_row(title, *verdicts, f"{goal['met']}/{goal['measured']}")
    console.print(goals)
    for name, reason in report.get("skipped", {}).items():
        console.print(f"[yellow]skipped {name}[/yellow]: {reason}")
    console.print(f"report: {out / 'report.md'} and {out / 'report.json'}; plots: {', '.join(report.get('plots', []))}")
