"""The README section renderer: headline figures, goals, the scale table and plot, and machine from a report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from discovery.cli import main
from discovery_bench.report.readme import PLOT_DIR, SCALE_PLOT, bench_section, render_section


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
    assert bench_section(path, tmp_path) is None
    path.write_text(json.dumps(report))
    assert bench_section(path, tmp_path) == render_section(report, str(path))


_NA = {"na": "in-process store: no server and no keep-alive traffic (its limit is the process's memory)"}


def _scale_metric(label: str, unit: str, values: dict[str, float | str]) -> dict[str, Any]:
    """A scale metric: a number per backend, or a string: why it has none; memory never applies."""
    cells: dict[str, Any] = {"memory": _NA}
    for backend, value in values.items():
        if isinstance(value, str):
            cells[backend] = {"na": value}
        else:
            cells[backend] = {"median": value, "min": value, "max": value, "n": 1, "values": [value]}
    return {"label": label, "unit": unit, "better": "lower", "digits": 3, "backends": cells}


@pytest.fixture
def scaled(report: dict[str, Any]) -> dict[str, Any]:
    """The report with a scale workload: etcd held every step, zookeeper lost 12 at 3,000, etcd2's 3,000 failed."""
    report = copy.deepcopy(report)
    report["backends"] = {"memory": {}, "etcd": {}, "zookeeper": {}, "etcd2": {}}
    failed = "not measured: the step failed (see the notes)"
    metrics = {
        "knee": _scale_metric("knee", "", {"etcd": 10000, "zookeeper": 1000, "etcd2": 1000}),
        "limit": _scale_metric("limit", "", {"etcd": "every step held", "zookeeper": 3000, "etcd2": 3000}),
        "expired_1000": _scale_metric("expiries", "", {"etcd": 0, "zookeeper": 0, "etcd2": 0}),
        "expired_3000": _scale_metric("expiries", "", {"etcd": 0, "zookeeper": 12, "etcd2": failed}),
        "expired_10000": _scale_metric("expiries", "", {"etcd": 0, "zookeeper": "not reached", "etcd2": "not reached"}),
        "requests_per_s_1000": _scale_metric("requests", "/s", {"etcd": 1.5, "zookeeper": 2.5, "etcd2": 300.0}),
        "requests_per_s_3000": _scale_metric("requests", "/s", {"etcd": 1.5, "zookeeper": 2.5, "etcd2": failed}),
        "requests_per_s_10000": _scale_metric("requests", "/s", {"etcd": 1.6, "zookeeper": "x", "etcd2": "x"}),
        "cpu_pct_1000": _scale_metric("cpu", "%", {"etcd": 0.5, "zookeeper": 1.0, "etcd2": 12.0}),
        "cpu_pct_3000": _scale_metric("cpu", "%", {"etcd": 1.0, "zookeeper": 2.0, "etcd2": failed}),
        "cpu_pct_10000": _scale_metric("cpu", "%", {"etcd": 2.5, "zookeeper": "x", "etcd2": "x"}),
        "resync_s_1000": _scale_metric("resync", "s", {"etcd": 0.0123, "zookeeper": 0.25, "etcd2": 0.05}),
        "resync_s_3000": _scale_metric("resync", "s", {"etcd": 0.0345, "zookeeper": 0.5, "etcd2": failed}),
        # etcd's resync at 10,000 timed out: one figure of the step missing.
        "resync_s_10000": _scale_metric("resync", "s", {"etcd": "no RESYNCED", "zookeeper": "x", "etcd2": "x"}),
    }
    report["workloads"]["scale"] = {
        "params": {"steps": [1000, 3000, 10000], "ttl_s": 10.0, "hold_s": 10.0},
        "metrics": metrics,
    }
    return report


def _scale_part(section: str) -> str:
    return section[section.index("**Scale**") :]


def test_the_scale_table_gives_each_backends_knee_and_each_steps_costs(scaled: dict[str, Any]) -> None:
    part = _scale_part(render_section(scaled))
    assert "at ttl 10 s" in part and "held idle for 10 s" in part
    assert "|  | knee | 1,000 | 3,000 | 10,000 |" in part
    assert "| memory | n/a: in-process store: no server and no keep-alive traffic" in part
    assert part.count("| n/a | n/a | n/a |") == 1
    assert (
        "| etcd | ≥ 10,000 (every step held) | 1.5 /s · 0.5% · 0.0123 s | 1.5 /s · 1% · 0.0345 s "
        "| 1.6 /s · 2.5% · not measured |"
    ) in part
    assert "| zookeeper | 1,000 (lost 12 at 3,000) | 2.5 /s · 1% · 0.25 s | 2.5 /s · 2% · 0.5 s | not reached |" in part
    assert "| etcd2 | 1,000 (the step of 3,000 failed) | 300 /s · 12% · 0.05 s | not measured | not reached |" in part
    assert "![" not in part


def test_the_scale_part_says_not_measured_when_the_report_has_none(
    report: dict[str, Any], scaled: dict[str, Any]
) -> None:
    assert "**Scale** (the most instances one process keeps alive, and what each step costs): not measured." in (
        render_section(report)
    )
    # A scale workload whose figures are all missing (an interrupted run) reads not measured, cell by cell.
    scaled["workloads"]["scale"] = {"params": {}, "metrics": {"expired_1000": {"label": "x", "backends": {}}}}
    part = _scale_part(render_section(scaled))
    assert "|  | knee | 1,000 |" in part
    assert "| etcd | not measured | not measured |" in part


def _write_report(directory: Path, report: dict[str, Any], plot: bytes | None) -> Path:
    directory.mkdir(parents=True)
    if plot is not None:
        (directory / SCALE_PLOT).write_bytes(plot)
        report = {**report, "plots": [SCALE_PLOT]}
    path = directory / "report.json"
    path.write_text(json.dumps(report))
    return path


def test_the_scale_plot_is_copied_beside_the_readme_and_linked(scaled: dict[str, Any], tmp_path: Path) -> None:
    path = _write_report(tmp_path / "bench-report", scaled, b"\x89PNG plot")
    repo = tmp_path / "repo"
    repo.mkdir()
    first = bench_section(path, repo)
    assert first is not None
    assert (repo / PLOT_DIR / SCALE_PLOT).read_bytes() == b"\x89PNG plot"
    assert "![Scale: cost against live instances, log axes](docs/bench/scale_cost.png)" in first
    assert bench_section(path, repo) == first  # the same report renders the same text


def test_without_a_plot_nothing_is_copied_or_linked(scaled: dict[str, Any], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    listed_but_absent = {**scaled, "plots": [SCALE_PLOT]}
    for name, document in (("none", scaled), ("absent", listed_but_absent)):
        path = _write_report(tmp_path / name, document, None)
        section = bench_section(path, repo)
        assert section is not None and "![" not in section and "| zookeeper | 1,000 (lost 12 at 3,000)" in section
    assert not (repo / "docs").exists()


def test_discovery_readme_renders_the_section_and_copies_the_plot(scaled: dict[str, Any], tmp_path: Path) -> None:
    path = _write_report(tmp_path / "bench-report", scaled, b"\x89PNG plot")
    repo = tmp_path / "repo"
    repo.mkdir()
    names = ("capabilities", "metrics", "bench")
    (repo / "README.md").write_text("".join(f"<!-- {n}:start -->\nold\n<!-- {n}:end -->\n" for n in names))
    args = ["readme", str(repo / "README.md"), "--report", str(path), "--parity-dir", str(tmp_path / "none")]
    args += ["--soak", str(tmp_path / "none.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    text = (repo / "README.md").read_text()
    assert "| zookeeper | 1,000 (lost 12 at 3,000)" in text
    assert "](docs/bench/scale_cost.png)" in text
    assert (repo / PLOT_DIR / SCALE_PLOT).read_bytes() == b"\x89PNG plot"
    assert CliRunner().invoke(main, args).exit_code == 0
    assert (repo / "README.md").read_text() == text
