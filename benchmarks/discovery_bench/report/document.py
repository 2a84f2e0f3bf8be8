"""``report.json``: the one document every other output (``report.md``, plots, summary, README) is rendered from.

It holds the run (profile, duration, whether it was interrupted), the
machine, the backends measured and those skipped with the reason, every
workload's metrics per backend (median, min, max and every observation, or
why there is none; how a round's value and the figure are computed), latency
samples for the plots, the goals' verdicts, the parity table and the plots'
file names. :data:`SCHEMA` is its version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Report = dict[str, Any]
"""A report as ``report.json`` holds it."""

SCHEMA = 1


def write_json(report: Report, path: Path) -> None:
    """Write ``report.json``."""
    path.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
