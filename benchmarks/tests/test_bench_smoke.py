"""The benchmark end to end on its smoke profile: every installed backend, every workload, every metric, the files.

No timing is asserted: the smoke sizes are tiny and the machine may be busy.
What is checked is that the command runs through, that ``report.json``
holds a value or an explicit "not applicable" for every metric of every
workload on every installed backend (never a failure; for the lookup
workload and register_many, which apply everywhere, always a value, with the
register_many goal judged on every server backend; for the dashboard
workload too, where Chromium and Playwright are installed, with its goal
judged), that every raw watch baseline received every write, and that
``report.md`` and the plots are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import discovery
from discovery_bench import bench_command
from discovery_bench.harness.targets import BACKEND_ORDER, TRAITS, Naming, base_label
from discovery_bench.profiles import get_profile
from discovery_bench.workloads import Context, workloads_for
from discovery_bench.workloads.dashboard import missing_requirement

PLOTS = {
    "register_throughput.png",
    "propagation_latency.png",
    "burst_completeness.png",
    "keepalive_cost.png",
    "detection_vs_ttl.png",
    "scale_cost.png",
}


def _expected_cells(peers: bool) -> list[tuple[str, str]]:
    """(section, metric key) of every metric every workload declares."""
    ctx = Context(get_profile("smoke"), Naming("check"))
    return [(m.section or w.name, m.key) for w in workloads_for(ctx, peers=peers) for m in w.metrics()]


def _check_report(report: dict[str, Any], backends: list[str], peers: bool = False) -> None:
    assert list(report["backends"]) == backends
    assert not report["run"]["interrupted"]
    for section, key in _expected_cells(peers):
        metric = report["workloads"][section]["metrics"][key]
        for backend in backends:
            cell = metric["backends"][backend]
            assert "median" in cell or "na" in cell, (section, key, backend, cell)
            assert "errors" not in cell, (section, key, backend, cell)
            assert not str(cell.get("na", "")).startswith("failed"), (section, key, backend, cell)
    for goal in report["goals"]:
        assert set(goal["backends"]) == set(backends)
    # Every raw baseline hears every write (ZooKeeper's persistent watch included), or its ratio would flatter.
    for key, metric in report["workloads"]["propagation"]["metrics"].items():
        if key.startswith("raw_delivered_"):
            assert all(metric["backends"][backend]["min"] == 1 for backend in backends), (key, metric["backends"])
    notes = report["workloads"]["propagation"]["notes"]
    assert not [note for backend in backends for note in notes.get(backend, []) if "raw watch" in note], notes
    # The lookup workload applies to every backend: a value everywhere, never "not applicable".
    for key, metric in report["workloads"]["lookup"]["metrics"].items():
        assert all("median" in metric["backends"][backend] for backend in backends), (key, metric["backends"])
    # register_many applies everywhere; its goal is judged on every server backend (n/a in process).
    register = report["workloads"]["register"]["metrics"]
    for key in ("register_many", "register_many_vs_raw_best"):
        assert all("median" in register[key]["backends"][backend] for backend in backends), register[key]
    bulk = next(goal for goal in report["goals"] if goal["goal"] == "register_many")
    assert bulk["measured"] == len([b for b in backends if not TRAITS[base_label(b)].in_process]), bulk
    if missing_requirement() is None:
        dashboard = report["workloads"]["dashboard"]
        sizes = get_profile("smoke").dashboard_sizes
        assert [f"{kind}_{size}" for size in sizes for kind in ("render_ms", "up_ms", "heap_mib")] == list(
            dashboard["metrics"]
        )
        for key, metric in dashboard["metrics"].items():
            for backend in backends:
                cell = metric["backends"][backend]
                assert "median" in cell and cell["min"] > 0, (key, backend, cell)
        repetitions = get_profile("smoke").dashboard_repetitions
        for size in sizes:
            assert all(dashboard["metrics"][f"up_ms_{size}"]["backends"][b]["n"] == repetitions for b in backends)
        goal = next(goal for goal in report["goals"] if goal["goal"] == "dashboard_up")
        assert goal["measured"] == len(backends) and goal["note"] == f"measured with {sizes[-1]:,} instances"
    assert report["machine"]["cpus"] >= 1


@pytest.mark.timeout(240)
def test_smoke_profile_with_peers_on_local_servers(tmp_path: Path) -> None:
    installed = [b for b in BACKEND_ORDER if b in discovery.available_backends()]
    out = tmp_path / "report"
    result = CliRunner().invoke(
        bench_command, ["--profile", "smoke", "--peers", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    _check_report(report, installed, peers=True)
    assert set(report["skipped"]) == set(BACKEND_ORDER) - set(installed)
    markdown = (out / "report.md").read_text()
    assert "## Goals" in markdown and "## Parity" in markdown
    assert set(report["plots"]) == PLOTS
    for plot in PLOTS:
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
    assert "Goals" in result.output


def test_smoke_profile_against_a_given_url(tmp_path: Path) -> None:
    out = tmp_path / "report"
    url = "memory://bench-url-test/given-root"
    result = CliRunner().invoke(
        bench_command, ["--profile", "smoke", "--url", url, "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    _check_report(report, ["memory"])
    assert report["run"]["mode"] == "urls"
    assert report["backends"]["memory"]["url"] == url


def test_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(bench_command, ["--backends", "memory,consul", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "consul" in result.output
