"""The benchmark's small pure parts: statistics, number formatting, goals, parity loading, results model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from discovery_bench.harness.targets import BenchTarget, targets_from_urls
from discovery_bench.metrics import Metric
from discovery_bench.report.format import cell_text, number
from discovery_bench.report.goals import evaluate_goals
from discovery_bench.report.parity import NO_RESULTS, parity_summary
from discovery_bench.report.results import Observations, ResultSet
from discovery_bench.stats import percentile, summarise


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99.9) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_is_median_and_range() -> None:
    assert summarise([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_numbers_read_well() -> None:
    assert number(27806.4) == "27,806"
    assert number(0.8428) == "0.843"
    assert number(1.0, 4) == "1"
    assert number(0.01, 4) == "0.01"
    metric = {"unit": "/s", "digits": 3}
    assert cell_text({"median": 600.0, "min": 590.0, "max": 610.0, "n": 3}, metric) == "600 (590-610) /s"
    assert cell_text({"na": "n/a here"}, metric) == "n/a"


def test_results_say_why_a_metric_has_no_value() -> None:
    results = ResultSet(["memory", "etcd"])
    metrics = [Metric("rate", "rate", "/s"), Metric("other", "other")]
    results.declare("w", "W", "", {}, metrics)
    obs = Observations()
    obs.add("rate", 10.0)
    obs.na("other", "does not apply")
    results.record("w", "memory", obs, metrics)
    results.error("w", "etcd", "boom", metrics)
    doc = results.to_json()["w"]["metrics"]
    assert doc["rate"]["backends"]["memory"]["median"] == 10.0
    assert doc["other"]["backends"]["memory"] == {"na": "does not apply"}
    assert doc["rate"]["backends"]["etcd"]["na"] == "failed: boom"


def test_a_failed_measurement_marks_only_its_metrics() -> None:
    results = ResultSet(["etcd2"])
    metrics = [Metric("kept", "kept"), Metric("resync", "resync", section="r")]
    results.declare("w", "W", "", {}, metrics[:1])
    results.declare("r", "R", "", {}, metrics[1:])
    obs = Observations()
    obs.add("kept", 1.0)
    obs.failed(["resync"], "AssertionError: no convergence; holder stderr: session lost", "r")
    results.record("w", "etcd2", obs, metrics)
    document = results.to_json()
    assert document["w"]["metrics"]["kept"]["backends"]["etcd2"]["median"] == 1.0
    failed = document["r"]["metrics"]["resync"]["backends"]["etcd2"]
    assert failed["na"] == "failed: AssertionError: no convergence; holder stderr: session lost"
    assert document["r"]["notes"]["etcd2"] == ["error: AssertionError: no convergence; holder stderr: session lost"]


def _cell(value: float, low: float | None = None) -> dict[str, Any]:
    return {"median": value, "min": value if low is None else low, "max": value, "n": 1}


def test_goals_are_measured_per_backend() -> None:
    workloads = {
        "register": {"metrics": {"ratio_c1": {"backends": {"etcd": _cell(0.95), "zookeeper": _cell(0.5)}}}},
        "propagation": {
            "params": {"rates": [{"tag": "100", "rate": "100/s", "writes": 200}]},
            "metrics": {"delivered_100": {"backends": {"etcd": _cell(1.0), "zookeeper": _cell(1.0, low=0.99)}}},
        },
    }
    goals = {g["goal"]: g for g in evaluate_goals(workloads, ["etcd", "zookeeper"])}
    assert goals["register_ratio"]["backends"]["etcd"]["met"] is True
    assert goals["register_ratio"]["backends"]["zookeeper"]["met"] is False
    assert goals["events"]["backends"]["zookeeper"]["value"] == 2
    assert goals["detection"]["backends"]["etcd"]["met"] is None
    assert goals["register_ratio"]["met"] == 1 and goals["register_ratio"]["measured"] == 2


def test_parity_results_are_read_or_reported_missing(tmp_path: Path) -> None:
    assert parity_summary(tmp_path / "absent")["missing"] == NO_RESULTS
    (tmp_path / "etcd.json").write_text(
        json.dumps({"backend": "etcd", "scenarios": [{"scenario": "test_a", "outcome": "passed", "resyncs": 1}]})
    )
    (tmp_path / "broken.json").write_text("{")
    parity = parity_summary(tmp_path)
    assert parity["backends"] == ["etcd"]
    assert parity["scenarios"]["test_a"]["etcd"] == {"outcome": "passed", "resyncs": 1}
    assert "unreadable" not in parity


def test_targets_from_urls_are_labelled_by_backend() -> None:
    targets = targets_from_urls(["zk://h:2181/a", "etcd://h1:1,h2:2/b", "etcd://h3/c"])
    assert [t.label for t in targets] == ["zookeeper", "etcd", "etcd#2"]
    assert targets[1].hosts == [("h1", 1), ("h2", 2)]
    assert targets[2].hosts == [("h3", 2379)]
    assert targets[1].root == "/b"
    assert BenchTarget("zookeeper", "zookeeper://h:1/r?x=1").url_with(session_timeout=2) == (
        "zookeeper://h:1/r?x=1&session_timeout=2"
    )
