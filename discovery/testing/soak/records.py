"""The soak's traffic logs: one JSON line per acknowledged write, written by :class:`WriteLog` and read back here.

A line is ``{"client", "kind", "key", "revision", "at"}`` for a write the
backend acknowledged, ``{"alive", "key", "at"}`` when a registration went
down or came back, ``{"ready": true}`` once a registrant's instances stand,
and ``{"error", "at"}`` for a write that failed. Lines are flushed one by
one, so a process killed with SIGKILL loses nothing it had acknowledged; a
line cut short is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from discovery.testing.history import Write, WriteKind

__all__ = ["WriteLog", "alive_at", "records_in", "writes_in"]


class WriteLog:
    """One JSON line per acknowledged write, flushed at once."""

    def __init__(self, stream: IO[str], client: str) -> None:
        self._stream = stream
        self._client = client

    def write(self, kind: WriteKind, key: str, revision: int | None) -> None:
        self.line({"client": self._client, "kind": kind.value, "key": key, "revision": revision, "at": time.time()})

    def line(self, data: dict[str, Any]) -> None:
        self._stream.write(json.dumps(data) + "\n")
        self._stream.flush()


def records_in(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON records of a traffic log; a line cut short by SIGKILL is skipped."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def alive_at(lines: Iterable[str], moment: float) -> frozenset[str]:
    """The keys a registrant's log says were alive at ``moment``: registered, and not lost since, or put back."""
    alive: dict[str, bool] = {}
    for record in records_in(lines):
        if float(record.get("at", 0.0)) > moment:
            break
        if record.get("kind") == WriteKind.REGISTER.value:
            alive[str(record["key"])] = True
        elif "alive" in record:
            alive[str(record["key"])] = bool(record["alive"])
    return frozenset(key for key, up in alive.items() if up)


def writes_in(lines: Iterable[str]) -> Iterator[Write]:
    """The acknowledged writes of a traffic log."""
    for record in records_in(lines):
        if "kind" in record:
            revision = record.get("revision")
            yield Write(
                str(record["client"]),
                WriteKind(record["kind"]),
                str(record["key"]),
                revision if isinstance(revision, int) else None,
                float(record["at"]),
            )
