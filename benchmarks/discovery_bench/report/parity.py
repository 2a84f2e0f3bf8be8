"""The report's parity table: the conformance suite's outcome per scenario and backend, from its JSON results.

``discovery.testing.plugin`` writes one ``parity-results/<backend>.json`` per
backend label when the suite runs (``make test``): ``{"backend": label,
"scenarios": [{"scenario", "outcome", ...}]}``. The benchmark only reads
them, so the table in its report is generated from what the suite actually
proved, never written by hand. Missing results are said so, with how to get
them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from discovery.testing.parity import load_parity

NO_RESULTS = "no parity results found: run make test"


def parity_directory() -> Path:
    """Where the suite writes its results: ``$DISCOVERY_PARITY_DIR``, else ``./parity-results``."""
    return Path(os.environ.get("DISCOVERY_PARITY_DIR", "parity-results"))


def parity_summary(directory: Path | None = None) -> dict[str, Any]:
    """The suite's results as one table for the report, or a ``missing`` note; invalid files are skipped.

    Returns:
        ``{"source", "backends", "scenarios": {name: {backend: outcome}}}``, or ``{"source", "missing"}``.
    """
    directory = parity_directory() if directory is None else directory
    backends: list[str] = []
    scenarios: dict[str, dict[str, dict[str, Any]]] = {}
    for document in load_parity(directory):
        label = str(document["backend"])
        backends.append(label)
        for entry in document["scenarios"]:
            if not isinstance(entry, dict) or "scenario" not in entry:
                continue
            cell = {key: entry[key] for key in ("outcome", "resyncs", "duration_s", "reason") if key in entry}
            scenarios.setdefault(str(entry["scenario"]), {})[label] = cell
    if not backends:
        return {"source": str(directory), "missing": NO_RESULTS}
    return {"source": str(directory), "backends": backends, "scenarios": scenarios}
