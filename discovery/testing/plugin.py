"""The suite's pytest plugin: parity results as data, and the suite against a live registry.

Loaded with ``-p discovery.testing.plugin``. For every test of a class built
on :class:`~discovery.testing.fixtures.RegistryFixtures` it records the
scenario, outcome, duration and the numbers the scenario filed in its
``parity`` fixture, and writes one JSON file per backend label into
``--parity-dir`` (default ``$DISCOVERY_PARITY_DIR`` or ``parity-results``):
the data the README's and the benchmark's parity tables are generated from.
With ``--registry-url URL`` the suite runs against that registry::

    pytest -p discovery.testing.plugin --registry-url etcd://10.0.0.1:2379/check --pyargs discovery.testing.live
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from discovery.testing.fixtures import RegistryFixtures

_RESULTS = pytest.StashKey[dict[str, dict[str, dict[str, Any]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("discovery", "discovery conformance suite")
    group.addoption("--registry-url", default=None, help="run discovery.testing.live against this registry URL")
    group.addoption(
        "--parity-dir",
        default=os.environ.get("DISCOVERY_PARITY_DIR", "parity-results"),
        help="where to write the per-backend parity results (JSON)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = {}
    config.addinivalue_line("python_files", "live.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    cls = getattr(item, "cls", None)
    if cls is None or not issubclass(cls, RegistryFixtures):
        return
    if report.when == "setup" and report.passed:
        return
    if report.when == "teardown" and report.passed:
        return
    results = item.config.stash[_RESULTS].setdefault(cls.label, {})
    name = getattr(item, "originalname", item.name)
    entry = results.setdefault(f"{cls.__name__}::{name}", {"scenario": name, "suite": cls.__name__, "duration_s": 0.0})
    entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
    if report.when == "call" or not report.passed:
        entry["outcome"] = "skipped" if report.skipped else ("passed" if report.passed else "failed")
    if report.skipped and isinstance(report.longrepr, tuple):
        entry["reason"] = str(report.longrepr[2])
    funcargs = getattr(item, "funcargs", {})
    parity = funcargs.get("parity")
    if isinstance(parity, dict):
        entry.update({k: v for k, v in parity.items() if k != "backend"})


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = session.config.stash.get(_RESULTS, {})
    if not results:
        return
    directory = Path(session.config.getoption("--parity-dir"))
    directory.mkdir(parents=True, exist_ok=True)
    for label, scenarios in results.items():
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()
        ordered = sorted(scenarios.values(), key=lambda s: (s["scenario"], s["suite"]))
        document = {"backend": label, "scenarios": ordered}
        (directory / f"{slug}.json").write_text(json.dumps(document, indent=2) + "\n")
