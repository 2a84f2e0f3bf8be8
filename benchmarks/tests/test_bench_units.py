"""The benchmark's small pure parts: statistics, formatting, goals, parity loading, results model, batch timing,
the dashboard workload's selectors, heap reading, spread population and the register_many figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from discovery_bench.harness.holder import service_of
from discovery_bench.harness.targets import BenchTarget, Naming, targets_from_urls
from discovery_bench.metrics import Metric
from discovery_bench.metrics import catalogue as m
from discovery_bench.profiles import get_profile
from discovery_bench.report.format import cell_text, number, verdict_text
from discovery_bench.report.goals import evaluate_goals
from discovery_bench.report.headline import headline_rows
from discovery_bench.report.parity import NO_RESULTS, parity_summary
from discovery_bench.report.results import Observations, ResultSet
from discovery_bench.stats import percentile, summarise
from discovery_bench.workloads import Context
from discovery_bench.workloads.dashboard import DashboardWorkload, heap_used_mib, node_selector
from discovery_bench.workloads.lookup import MOST_PER_BATCH, batch_size, time_calls
from discovery_bench.workloads.register import RegisterWorkload, raw_best


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
    assert goals["register_ratio_c1"]["backends"]["etcd"]["met"] is True
    assert goals["register_ratio_c1"]["backends"]["zookeeper"]["met"] is False
    assert goals["register_ratio_c1"]["backends"]["zookeeper"]["display"] == "0.50x"
    assert goals["events"]["backends"]["zookeeper"]["value"] == 2
    assert goals["detection"]["backends"]["etcd"]["met"] is None
    assert goals["register_ratio_c1"]["met"] == 1 and goals["register_ratio_c1"]["measured"] == 2
    assert goals["register_ratio_c8"]["measured"] == 0


def test_goals_that_make_no_sense_for_a_backend_say_na_with_the_reason() -> None:
    workloads = {
        "register": {"metrics": {"ratio_c1": {"backends": {"memory": _cell(0.3), "zookeeper": _cell(0.95)}}}},
        "propagation": {
            "metrics": {
                "p99_vs_raw_1000": {"backends": {"memory": _cell(16.0), "zookeeper": _cell(1.4)}},
                "p99_ms_1000": {"backends": {"memory": _cell(0.4), "zookeeper": _cell(6.0)}},
            }
        },
        "scale": {
            "params": {"ttl_s": 10.0},
            "metrics": {
                "knee": {"backends": {"memory": {"na": "in-process store"}, "zookeeper": _cell(30_000.0)}},
                "limit": {"backends": {"memory": {"na": "in-process store"}, "zookeeper": _cell(100_000.0)}},
            },
        },
    }
    goals = {g["goal"]: g for g in evaluate_goals(workloads, ["memory", "zookeeper"])}
    for key in ("register_ratio_c1", "watch_p99_1000"):
        memory = goals[key]["backends"]["memory"]
        assert memory["met"] is None and memory["na"] and memory["display"].startswith("n/a: ")
        assert goals[key]["measured"] == 1
    assert goals["watch_p99_1000"]["backends"]["zookeeper"]["met"] is True
    assert goals["memory_p99"]["backends"]["memory"] == {"met": True, "value": 0.4, "display": "0.400 ms"}
    assert "na" in goals["memory_p99"]["backends"]["zookeeper"]
    knee = goals["scale_knee"]["backends"]
    assert knee["zookeeper"] == {"met": True, "value": 30_000.0, "display": "30,000 (lost instances at 100,000)"}
    assert "na" in knee["memory"]
    marks: dict[bool | None, str] = {True: "ok", False: "x", None: "-"}
    assert verdict_text(goals["register_ratio_c1"]["backends"]["memory"], marks).startswith("n/a: raw is")
    assert verdict_text(knee["zookeeper"], marks) == "ok 30,000 (lost instances at 100,000)"


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


def test_batches_fill_about_a_millisecond_and_slow_calls_are_timed_alone() -> None:
    assert batch_size(1e-6) == 1000
    assert batch_size(0.01) == 1
    assert batch_size(1e-12) == MOST_PER_BATCH
    assert batch_size(0.0) == MOST_PER_BATCH


def test_calls_are_timed_in_batches_and_reported_per_call() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def call() -> None:
        now[0] += 2**-19  # every call takes about 1.9 µs of the fake clock (exact in binary); reading it, none

    timing = time_calls(call, duration=2**-6, batch_seconds=2**-10, clock=clock)
    assert timing.batch == 512
    assert len(timing.per_call_s) == 16 and timing.calls == 512 * 16
    assert timing.rate == pytest.approx(2**19)
    assert timing.per_call_us() == pytest.approx([2**-19 * 1e6] * 16)


def test_lookup_goals_read_pick_rate_and_visibility_ratio_with_the_size_measured() -> None:
    workloads = {
        "lookup": {
            "params": {"instances": 50, "writes": 40},
            "metrics": {
                "per_s_pick": {"backends": {"etcd": _cell(1_500_000.0), "zookeeper": _cell(900_000.0)}},
                "visible_vs_event_p99": {"backends": {"etcd": _cell(1.1), "zookeeper": _cell(1.3)}},
                "cache_visible": {"backends": {"etcd": _cell(1.0), "zookeeper": _cell(1.0, low=0.95)}},
                "watch_delivered": {"backends": {"etcd": _cell(1.0), "zookeeper": _cell(1.0)}},
            },
        },
    }
    goals = {g["goal"]: g for g in evaluate_goals(workloads, ["etcd", "zookeeper"])}
    assert [goals["pick"]["backends"][b]["met"] for b in ("etcd", "zookeeper")] == [True, False]
    assert goals["pick"]["backends"]["etcd"]["display"] == "1,500,000/s"
    assert goals["pick"]["note"] == "measured with 50 instances"
    assert [goals["cache_visibility"]["backends"][b]["met"] for b in ("etcd", "zookeeper")] == [True, False]
    assert goals["events"]["backends"]["zookeeper"]["value"] == 2  # 5 % of 40 writes never visible in the cache
    assert "note" not in goals["resync"]


def test_the_lookup_metrics_are_one_family_per_lookup_and_ratios_of_the_same_round() -> None:
    assert [m.LOOKUP_PER_S.at(kind).key for kind in m.LOOKUP_KINDS] == ["per_s_registry", "per_s_cache", "per_s_pick"]
    assert m.PICK_PER_S.label == "provider.pick() calls/s"
    obs = Observations()
    obs.add(m.CACHE_VISIBLE_P99_MS, 6.0)
    obs.add(m.WATCH_EVENT_P99_MS, 5.0)
    obs.derive([m.VISIBLE_VS_EVENT])
    assert obs.values[m.VISIBLE_VS_EVENT.key] == [pytest.approx(1.2)]


def test_a_spread_population_fills_its_services_evenly_at_every_size() -> None:
    assert service_of("a/b", 1, 7) == "a/b"
    homes = [service_of("a/b", 100, index) for index in range(10_000)]
    assert len(set(homes[:100])) == 100  # 100 instances: one per service
    assert {homes.count(home) for home in set(homes)} == {100}
    assert homes[101] == "a/b/s1"


def test_the_dashboard_is_measured_per_size_and_read_through_its_selectors_and_heap_metric() -> None:
    assert (
        node_selector("bench-1/d/r0/probe-1", health="up")
        == '.node[data-service="bench-1/d/r0/probe-1"][data-health="up"]'
    )
    assert node_selector("p", total=200) == '.node[data-service="p"][data-total="200"]'
    assert heap_used_mib([{"name": "Nodes", "value": 10}, {"name": "JSHeapUsedSize", "value": 3 * 2**20}]) == 3.0
    with pytest.raises(KeyError):
        heap_used_mib([{"name": "Nodes", "value": 10}])
    workload = DashboardWorkload(Context(get_profile("smoke"), Naming("t")))
    assert [metric.key for metric in workload.metrics()] == [
        "render_ms_20",
        "up_ms_20",
        "heap_mib_20",
        "render_ms_200",
        "up_ms_200",
        "heap_mib_200",
    ]
    assert {metric.section for metric in workload.metrics()} == {"dashboard"}
    assert m.DASHBOARD_UP_MS.at(10_000).label == "register() → node up in the browser, 10,000 instances"
    assert get_profile("default").dashboard_sizes == (100, 10_000)


def _dashboard(sizes: list[int], up_ms: dict[str, dict[str, float]]) -> dict[str, Any]:
    metrics = {
        f"up_ms_{size}": {
            "label": f"register() → node up in the browser, {size:,} instances",
            "unit": "ms",
            "digits": 3,
            "backends": {b: _cell(v["median"], v.get("min")) | {"max": v["max"]} for b, v in up_ms.items()},
        }
        for size in sizes
    }
    return {"dashboard": {"params": {"sizes": sizes}, "metrics": metrics}}


def test_the_dashboard_goal_reads_the_median_at_the_largest_size_and_says_which() -> None:
    workloads = _dashboard(
        [100, 10_000], {"etcd": {"median": 180.0, "max": 1400.0}, "etcd2": {"median": 1250.0, "max": 1300.0}}
    )
    goal = next(g for g in evaluate_goals(workloads, ["memory", "etcd", "etcd2"]) if g["goal"] == "dashboard_up")
    assert goal["backends"]["etcd"] == {"met": True, "value": 180.0, "display": "180 ms (slowest 1,400)"}
    assert goal["backends"]["etcd2"]["met"] is False
    assert goal["backends"]["memory"]["met"] is None
    assert "note" not in goal
    smoke = _dashboard([20, 200], {"etcd": {"median": 90.0, "max": 100.0}})
    goal = next(g for g in evaluate_goals(smoke, ["etcd"]) if g["goal"] == "dashboard_up")
    assert goal["note"] == "measured with 200 instances"
    rows = headline_rows({"backends": {"etcd": {}}, "workloads": smoke})
    assert [label for label, _cells in rows] == ["register() → node up in the browser, 200 instances"]


def _bulk(rates: dict[str, float], ratios: dict[str, float]) -> dict[str, Any]:
    return {
        "register": {
            "metrics": {
                metric.key: {
                    "label": metric.label,
                    "unit": metric.unit,
                    "digits": metric.digits,
                    "backends": {b: _cell(v) for b, v in values.items()},
                }
                for metric, values in ((m.REGISTER_MANY_RATE, rates), (m.REGISTER_MANY_VS_RAW_BEST, ratios))
            }
        }
    }


def test_the_bulk_registration_goal_holds_register_many_to_the_raw_clients_best_rate() -> None:
    workloads = _bulk(
        {"memory": 90_000.0, "etcd": 3_000.0, "zookeeper": 4_500.0},
        {"memory": 0.2, "etcd": 1.25, "zookeeper": 0.75},
    )
    backends = ["memory", "etcd", "etcd2", "zookeeper"]
    goal = next(g for g in evaluate_goals(workloads, backends) if g["goal"] == "register_many")
    verdicts = goal["backends"]
    assert verdicts["etcd"] == {"met": True, "value": 1.25, "display": "3,000/s, 1.25x raw best"}
    assert verdicts["zookeeper"] == {"met": False, "value": 0.75, "display": "4,500/s, 0.75x raw best"}
    assert verdicts["etcd2"] == {"met": None, "value": None, "display": "not measured"}
    assert verdicts["memory"]["met"] is None and verdicts["memory"]["display"].startswith("n/a: raw is")
    assert "dict insert" in verdicts["memory"]["na"]
    assert goal["met"] == 1 and goal["measured"] == 2
    marks: dict[bool | None, str] = {True: "ok", False: "x", None: "-"}
    assert verdict_text(verdicts["zookeeper"], marks) == "x 4,500/s, 0.75x raw best"
    rows = dict(headline_rows({"backends": {b: {} for b in backends}, "workloads": workloads}))
    assert rows["registry register_many, instances/s"]["etcd"] == "3,000 /s"
    assert rows["register_many ÷ raw client's best single-op rate"]["zookeeper"] == "0.75"


def test_the_bulk_registration_goal_needs_both_figures() -> None:
    workloads = _bulk({"etcd": 3_000.0}, {})
    verdict = next(g for g in evaluate_goals(workloads, ["etcd"]) if g["goal"] == "register_many")["backends"]["etcd"]
    assert verdict == {"met": None, "value": None, "display": "not measured"}


def test_the_raw_side_of_register_many_is_the_best_raw_rate_of_the_round() -> None:
    obs = Observations()
    obs.add(m.RAW_RATE.at(1), 500.0)
    obs.add(m.RAW_RATE.at(8), 1_200.0)
    assert raw_best(obs, (1, 8)) == 1_200.0
    obs.add(m.RAW_ASYNC_RATE, 9_000.0)
    assert raw_best(obs, (1, 8)) == 9_000.0
    assert raw_best(obs, ()) == 9_000.0
    assert raw_best(Observations(), (1, 8)) is None
    workload = RegisterWorkload(Context(get_profile("smoke"), Naming("t")))
    keys = [metric.key for metric in workload.metrics()]
    assert keys[-2:] == ["register_many", "register_many_vs_raw_best"]
    assert {metric.section for metric in workload.metrics()} == {"register"}
