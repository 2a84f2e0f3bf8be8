"""The machine a run measured on: CPUs, memory, OS, Python, server versions, date, load.

Numbers from a benchmark mean little without the machine they came from, so
every report and the README section carry this; the load average at the
start and the end shows whether something else (another test run) shared the
CPUs.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import psutil

import discovery


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip().strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def describe_machine(
    server_versions: dict[str, str], started: datetime.datetime, load_at_start: list[float]
) -> dict[str, Any]:
    """The machine's description for ``report.json``, with the run's start time and the load then."""
    return {
        "cpus": os.cpu_count() or 0,
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": _os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "discovery": discovery.__version__,
        "etcd": server_versions.get("etcd", "not used"),
        "zookeeper": server_versions.get("zookeeper", "not used"),
        "date": started.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": load_at_start,
    }
