"""The soak's report: ``soak.json`` for tools and ``soak.md`` for people, from the phases' results.

One row per backend: how long it ran, the acknowledged writes, the events
the consumers took and the checker went through, the faults played by kind,
the resyncs by reason, and the anomalies per property (the goal is 0
everywhere). The markdown table is what the README shows for the last full
run (``discovery readme`` reads ``soak.json``).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from discovery.testing.history import PROPERTIES
from discovery.testing.soak.runner import PhaseResult, SoakConfig

__all__ = ["markdown_table", "to_json", "write_report"]

_ANOMALIES_SHOWN = 50


def to_json(config: SoakConfig, results: Sequence[PhaseResult]) -> dict[str, Any]:
    """The run as a JSON-ready dict."""
    return {
        "seed": config.seed,
        "duration": config.duration,
        "machine": {"cpus": _cpus(), "platform": platform.platform(), "python": platform.python_version()},
        "backends": [
            {
                "backend": r.backend,
                "seconds": round(r.seconds, 1),
                "operations": r.operations,
                "events": r.events,
                "faults": dict(sorted(r.faults.items())),
                "resyncs": dict(sorted(r.resyncs.items())),
                "anomalies": {p: sum(1 for a in r.anomalies if a.property == p) for p in PROPERTIES},
                "anomaly_list": [str(a) for a in r.anomalies[:_ANOMALIES_SHOWN]],
            }
            for r in results
        ],
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"


def markdown_table(report: Mapping[str, Any]) -> str:
    """The markdown table of a report made by :func:`to_json`."""
    lines = [
        "| backend | seconds | writes | events checked | faults | resyncs | anomalies |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for row in report["backends"]:
        found = {p: n for p, n in row["anomalies"].items() if n}
        verdict = "**0**" if not found else ", ".join(f"**{p} {n}**" for p, n in found.items())
        lines.append(
            f"| {row['backend']} | {row['seconds']:g} | {row['operations']:,} | {row['events']:,} | "
            f"{_counts(row['faults'])} | {_counts(row['resyncs'])} | {verdict} |"
        )
    machine = report["machine"]
    lines.append("")
    lines.append(
        f"Seed {report['seed']}, {report['duration']:g} s in all, on {machine['cpus']} CPUs "
        f"({machine['platform']}, Python {machine['python']}). Properties checked per consumer: "
        + ", ".join(PROPERTIES)
        + "."
    )
    return "\n".join(lines) + "\n"


def write_report(config: SoakConfig, results: Sequence[PhaseResult]) -> dict[str, Any]:
    """Write ``soak.json`` and ``soak.md`` into ``config.out``; return the JSON form."""
    report = to_json(config, results)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for result in results:
        folder = out / result.backend
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "anomalies.txt").write_text("".join(f"{a}\n" for a in result.anomalies), encoding="utf-8")
        (folder / "faults.json").write_text(json.dumps(result.fault_log, indent=2) + "\n", encoding="utf-8")
    anomalies = [line for row in report["backends"] for line in row["anomaly_list"]]
    text = "# Soak\n\n" + markdown_table(report)
    if anomalies:
        text += "\n## Anomalies\n\n" + "\n".join(f"- {line}" for line in anomalies) + "\n"
    (out / "soak.md").write_text(text, encoding="utf-8")
    return report
