"""The parity table: the conformance suite's results per backend, read from the plugin's JSON files.

The suite's plugin writes one ``<backend>.json`` per backend label into the
parity directory; :func:`load_parity` reads them and
:func:`parity_table_markdown` renders one row per scenario and one column per
backend, each cell the outcome with the events seen out of those expected
and the resyncs the watch flagged. The README and the benchmark report embed
this table, generated from a real run, never written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_MARKS = {"passed": "✓", "failed": "✗", "skipped": "skipped"}


def load_parity(directory: Path | str) -> list[dict[str, Any]]:
    """The per-backend results in ``directory``, sorted by backend label; empty if there are none."""
    path = Path(directory)
    if not path.is_dir():
        return []
    documents = []
    for file in sorted(path.glob("*.json")):
        try:
            document = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("scenarios"), list):
            documents.append(document)
    return sorted(documents, key=lambda d: str(d.get("backend", "")))


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return ""
    text = _MARKS.get(str(entry.get("outcome")), "?")
    if entry.get("expected") is not None and entry.get("seen") is not None:
        text += f" {entry['seen']}/{entry['expected']}"
    if entry.get("naive_seen") is not None:
        text += f", naive loop {entry['naive_seen']}/{entry.get('expected')}"
    resyncs = entry.get("resyncs")
    if resyncs:
        text += f" ({resyncs} resync{'s' if resyncs != 1 else ''})"
    return text


def parity_table_markdown(documents: Sequence[dict[str, Any]]) -> str:
    """One row per scenario, one column per backend; a cell is outcome, events seen/expected, resyncs.

    Returns:
        The Markdown table ending with a newline, or a one-line note when there are no results.
    """
    if not documents:
        return "_No parity results found: run `make test`._\n"
    labels = [str(d["backend"]) for d in documents]
    by_backend: list[dict[str, dict[str, Any]]] = []
    scenarios: list[str] = []
    for document in documents:
        entries: dict[str, dict[str, Any]] = {}
        for entry in document["scenarios"]:
            name = str(entry.get("scenario", "")).removeprefix("test_").replace("_", " ")
            # A scenario run by several suites of one backend shows its worst outcome.
            previous = entries.get(name)
            if previous is None or previous.get("outcome") == "passed":
                entries[name] = entry
            if name not in scenarios:
                scenarios.append(name)
        by_backend.append(entries)
    lines = ["| scenario | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in sorted(scenarios):
        lines.append(f"| {name} | " + " | ".join(_cell(entries.get(name)) for entries in by_backend) + " |")
    return "\n".join(lines) + "\n"
