"""The scale workload's parts, the side processes and the resync workload's convergence check, without servers.

The convergence check is held to the case that used to fail ("watch did not
converge in 50 s" on etcd v2 at 10,000 instances, whose keys kept expiring
and coming back): a store that never stands still for the quiet period must
still be proved converged, at a listing's revision. The side processes are
driven for real (a census over an empty memory:// store in a child), and the
``--workloads`` option runs only what it names.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import discovery
from discovery import Event
from discovery_bench import bench_command
from discovery_bench.harness.procs import Children
from discovery_bench.harness.side import Side, SideFailed, target_args, target_from
from discovery_bench.harness.targets import BenchTarget, Naming
from discovery_bench.metrics import catalogue as m
from discovery_bench.profiles import PROFILES
from discovery_bench.report.results import Observations
from discovery_bench.workloads import WORKLOAD_NAMES, Context, workloads_for
from discovery_bench.workloads.resync import converge, own_resync
from discovery_bench.workloads.scale import ScaleWorkload, _shares, _warning, censored_percentile, census_side


def test_convergence_is_proved_at_a_listing_revision_while_the_store_never_stands_still() -> None:
    with discovery.connect("memory://bench-converge") as registry:
        for index in range(50):
            registry.register("svc", f"p{index}", ttl=60)
        stop = threading.Event()

        def churn() -> None:  # a change every 10 ms: never the 0.1 s of quiet a comparison used to wait for
            flip = 0
            while not stop.is_set():
                registry.register("svc", "flapping", meta={"n": flip}, ttl=60)
                flip += 1
                time.sleep(0.01)

        thread = threading.Thread(target=churn, daemon=True)
        with registry.watch("svc") as watch:
            thread.start()
            try:
                events: list[Event] = []
                assert converge(watch, registry, events, timeout=20, quiet=0.1) == "at revision"
            finally:
                stop.set()
                thread.join()
            assert converge(watch, registry, events, timeout=20, quiet=0.1) == "after quiet"


def test_a_requested_resync_counts_its_own_events_only() -> None:
    with discovery.connect("memory://bench-own-resync") as registry:
        registry.register("svc", "a", ttl=60)
        with registry.watch("svc") as watch:
            events: list[Event] = []
            registry.register("svc", "b", ttl=60)
            seconds, own = own_resync(watch, "bench-mine", 10, events)
            assert own == 0 and seconds > 0
            assert [event.instance_id for event in events] == ["b"]  # delivered before, by the stream


def test_new_watchers_are_spread_evenly_over_the_processes() -> None:
    assert _shares(1, [0, 0, 0, 0]) == [1, 0, 0, 0]
    assert _shares(9, [1, 0, 0, 0]) == [2, 3, 2, 2]
    assert _shares(90, [3, 3, 2, 2]) == [22, 22, 23, 23]


def test_a_percentile_of_latencies_some_of_which_never_came_is_later_than_all_or_none() -> None:
    arrived = [float(v) for v in range(1, 100)]  # 99 of 100 came; the 100th counts as later than all
    assert censored_percentile(arrived, 100, 50) == pytest.approx(50.5)
    assert censored_percentile(arrived, 100, 98) == pytest.approx(98.02)
    assert censored_percentile(arrived, 100, 99) is None
    assert censored_percentile([*arrived, 100.0], 100, 99) == pytest.approx(99.01)
    assert censored_percentile([], 10, 50) is None


def test_the_holders_last_warning_is_quoted() -> None:
    stderr = (
        "/x/_v2_session.py:338: RefreshCapacityWarning: 10,000 keys need 3,000 refreshes/s, sustained 1,400/s\n"
        "  warnings.warn(message)\nsome other line\n"
    )
    assert _warning(stderr) == "RefreshCapacityWarning: 10,000 keys need 3,000 refreshes/s, sustained 1,400/s"
    assert _warning("nothing to see, no warnings.warn(here)") is None


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_holds_each_scale_step_a_whole_ttl_and_fans_out_over_one_of_its_steps(name: str) -> None:
    profile = PROFILES[name]
    assert list(profile.scale_steps) == sorted(set(profile.scale_steps))
    assert profile.scale_hold_ttls >= 1
    assert profile.scale_fanout_instances in profile.scale_steps
    workload = ScaleWorkload(Context(profile, Naming("t")))
    keys = [metric.key for metric in workload.metrics()]
    assert keys[:2] == [m.SCALE_KNEE.key, m.SCALE_LIMIT.key]
    assert m.SCALE_EXPIRED.at(profile.scale_steps[-1]).key in keys
    assert m.FANOUT_P99_MS.at(profile.scale_fanout[-1]).key in keys
    assert {metric.section for metric in workload.metrics()} == {"scale"}
    assert workload.applies(BenchTarget("memory", "memory://x")) is not None
    assert workload.applies(BenchTarget("etcd2", "etcd2://127.0.0.1:2379/x")) is None


def test_the_knee_is_a_figure_and_the_step_that_lost_instances_is_the_limit_with_its_reason() -> None:
    profile = PROFILES["smoke"]
    workload = ScaleWorkload(Context(profile, Naming("t")))
    first, second = profile.scale_steps
    obs = Observations()
    obs.add(m.SCALE_EXPIRED.at(first), 0)
    obs.add(m.SCALE_EXPIRED.at(second), 12)
    workload._conclude(first, (second, f"12 expiries among {second} instances"), obs)
    assert obs.values[m.SCALE_KNEE.key] == [first] and obs.values[m.SCALE_LIMIT.key] == [second]
    assert obs.notes[""][-1] == f"knee {first:,}; limit at {second:,}: 12 expiries among {second} instances"
    assert obs.unavailable[m.SCALE_RESYNC_S.at(second).key] == "not measured: the step failed (see the notes)"
    assert profile.scale_fanout_instances == second  # not held: the fan-out says why it has no figure
    assert obs.unavailable[m.FANOUT_P99_MS.at(1).key] == f"{second:,} instances were not held (knee {first:,})"
    held = Observations()
    workload._conclude(second, None, held)
    assert held.unavailable[m.SCALE_LIMIT.key] == f"every step held, up to {second:,} (the profile's largest)"


def test_a_side_process_answers_and_reports_its_failure() -> None:
    children = Children()
    target = BenchTarget("memory", "memory://bench-side/root")
    assert target_from(target_args(target)) == target
    try:
        census = Side(children, census_side, {"target": target_args(target), "service": "svc"})
        census.expect("watching", 60)
        assert census.ask("sync", 30, n=0, timeout=1) == {"added": 0, "removed": 0, "error": ""}
        resync = census.ask("resync", 30, timeout=10)
        assert resync["events"] == 0 and resync["seconds"] > 0
        assert census.ask("snapshot", 30)["instances"] == 0
        census.finish()
        broken = Side(children, census_side, {"service": "svc"})
        with pytest.raises(SideFailed, match="KeyError"):
            broken.expect("watching", 60)
    finally:
        children.kill_all()


def test_only_the_workloads_asked_for_run(tmp_path: Path) -> None:
    assert "scale" in WORKLOAD_NAMES and "peers" in WORKLOAD_NAMES
    ctx = Context(PROFILES["smoke"], Naming("t"))
    assert [w.name for w in workloads_for(ctx, False, frozenset({"scale", "register"}))] == ["register", "scale"]
    result = CliRunner().invoke(bench_command, ["--workloads", "register,nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nope" in result.output
    out = tmp_path / "report"
    args = ["--profile", "smoke", "--backends", "memory", "--workloads", "register", "--out", str(out)]
    result = CliRunner().invoke(bench_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert list(report["workloads"]) == ["register"]
