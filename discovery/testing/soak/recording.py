"""The raw recording kept beside a soak report: each consumer's observations, one JSON line each.

``<out>/<backend>/<consumer>.events.jsonl`` starts with the consumer's start
snapshot (revision and instance revisions), then one line per event
(``event``, ``key``, ``revision``, ``value_revision``, ``resync``,
``expired``), notice (``notice``, ``reason``, ``revision``) or re-open with
``since=`` (``reopened``), each with the wall-clock time it was taken: what
to read when an anomaly needs explaining.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from discovery.models import Notice
from discovery.testing.history import Observation, WatcherLog

__all__ = ["observation_record", "write_recording"]


def observation_record(observation: Observation) -> dict[str, Any]:
    """One consumer observation as a JSON-ready dict (the raw recording kept beside the report)."""
    item = observation.item
    if item is None:
        return {"at": observation.at, "reopened": True}
    if isinstance(item, Notice):
        return {"at": observation.at, "notice": item.kind.value, "reason": item.reason, "revision": item.revision}
    return {
        "at": observation.at,
        "event": item.kind.value,
        "key": f"{item.service}/{item.instance_id}",
        "revision": item.revision,
        "value_revision": item.instance.revision if item.instance is not None else None,
        "resync": item.resync,
        "expired": item.expired,
    }


def write_recording(folder: Path, logs: Sequence[WatcherLog]) -> None:
    """Each consumer's observations as ``<name>.events.jsonl``, with its start snapshot first."""
    for log in logs:
        lines = [json.dumps({"start": log.start_revision, "instances": {i.path: i.revision for i in log.start}})]
        lines.extend(json.dumps(observation_record(o)) for o in log.items)
        (folder / f"{log.name}.events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
