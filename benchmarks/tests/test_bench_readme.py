"""The README section renderer: headline figures and machine from a report, between the markers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from discovery_bench.report.readme import END, START, MarkersMissing, main, render_section, replace_section


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


def test_only_the_text_between_markers_changes(report: dict[str, Any]) -> None:
    text = f"# Title\n\nintro\n\n{START}\nold figures\n{END}\n\n## After\nkept\n"
    updated = replace_section(text, render_section(report))
    assert updated.startswith("# Title\n\nintro\n\n" + START + "\n")
    assert updated.endswith(END + "\n\n## After\nkept\n")
    assert "old figures" not in updated
    assert replace_section(updated, render_section(report)) == updated


def test_missing_markers_are_refused(report: dict[str, Any]) -> None:
    with pytest.raises(MarkersMissing):
        replace_section("no markers here\n", render_section(report))
    with pytest.raises(MarkersMissing):
        replace_section(f"{END}\n{START}\n", render_section(report))


def test_command_rewrites_the_readme(report: dict[str, Any], tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{START}\n{END}\nafter\n")
    assert main([str(report_path), str(readme)]) == 0
    text = readme.read_text()
    assert "612 /s" in text and text.startswith("before\n") and text.endswith("after\n")
    assert main([str(report_path), str(readme)]) == 0
    assert readme.read_text() == text


def test_command_errors(report: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(report))
    assert main([str(report_path), str(readme)]) == 2
    assert readme.read_text() == "no markers\n"
    assert main([str(tmp_path / "missing.json"), str(readme)]) == 1
    assert main([str(report_path)]) == 2
    assert "usage" in capsys.readouterr().err
