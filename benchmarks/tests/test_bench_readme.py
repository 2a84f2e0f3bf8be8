"""The README section renderer: headline figures and machine from a report, between the markers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from discovery_bench.report.readme import bench_section, render_section


def _metric(label: str, unit: str, values: dict[str, float]) -> dict[str, Any]:
    return {
        "label": label,
        "unit": unit,
        "better": "higher",
        "digits": 3,
        "backends": {
            "memory": {"na": "in-process store: no server"},
            **{b: {"median": v, "min": v, "max": v, "n": 1, "values": [v]} for b, v in values.items()},
        },
    }


@pytest.fixture
def report() -> dict[str, Any]:
    return {
        "run": {"profile": "default", "duration_s": 301.2, "interrupted": False},
        "machine": {
            "cpus": 2,
            "cpu_model": "Test CPU",
            "memory_gib": 4.0,
            "os": "TestOS",
            "python": "CPython 3.11.7",
            "etcd": "3.4.23",
            "zookeeper": "3.8.0",
            "date": "2030-01-01 00:00 UTC",
        },
        "backends": {"memory": {}, "etcd": {}},
        "skipped": {"zookeeper": "ZooKeeper did not start: no java"},
        "workloads": {
            "register": {
                "params": {},
                "metrics": {"registry_c1": _metric("registry, 1 registrant", "/s", {"etcd": 612.4})},
            },
            "keepalive": {
                "params": {"sizes": [100, 10000]},
                "metrics": {
                    "requests_per_s_100": _metric("server requests/s, 100 instances", "/s", {"etcd": 1.0}),
                    "requests_per_s_10000": _metric("server requests/s, 10,000 instances", "/s", {"etcd": 1.5}),
                },
            },
        },
        "goals": [
            {
                "goal": "events",
                "title": "0 events lost in every workload",
                "backends": {
                    "memory": {"met": True, "value": 0, "display": "0 lost"},
                    "etcd": {"met": False, "value": 3, "display": "3 lost"},
                },
                "met": 1,
                "measured": 2,
            }
        ],
    }


def test_section_holds_headline_goals_and_machine(report: dict[str, Any]) -> None:
    section = render_section(report)
    assert "| registry, 1 registrant | n/a | 612 /s |" in section
    assert "server requests/s, 10,000 instances" in section
    assert "server requests/s, 100 instances" not in section
    assert "✅ 0 lost" in section and "❌ 3 lost" in section
    assert "2 x Test CPU" in section and "etcd 3.4.23" in section and "ZooKeeper 3.8.0" in section
    assert "2030-01-01" in section and "--profile default" in section
    assert "Skipped zookeeper: ZooKeeper did not start" in section


def test_the_section_is_read_from_the_report_file(report: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    assert bench_section(path) is None
    path.write_text(json.dumps(report))
    assert bench_section(path) == render_section(report, str(path))
