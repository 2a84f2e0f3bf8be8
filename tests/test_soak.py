"""The chaos soak inside ``make test``: a short seeded run on every server backend, and the negative controls.

The short run is ``discovery soak`` itself (about two minutes: 3-member etcd
and ZooKeeper clusters, random traffic, the seeded fault schedule), held to
0 anomalies. The controls prove the checker is not blind: each faulty
backend makes it report the property it breaks, naming the key and the
revision; the fault the core masks (a batch delivered twice) is shown
masked, and the recording is broken instead for the properties the core
protects.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.memory import MemoryBackend
from discovery.testing.history import PROPERTIES, Anomaly
from discovery.testing.soak.controls import CONTROLS, TAMPERS, Control, run_control

SHORT_SECONDS = 45
SHORT_BACKENDS = ("etcd", "etcd2", "zookeeper")
SEED = 20261129


def test_a_short_seeded_soak_finds_no_anomaly_on_any_backend(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    command = [sys.executable, "-m", "discovery.cli", "soak", "--duration", str(SHORT_SECONDS), "--seed", str(SEED)]
    command += ["--backends", ",".join(SHORT_BACKENDS)]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=900)
    report = json.loads((out / "soak.json").read_text())
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"
    assert f"seed {SEED}" in done.stdout
    rows = {row["backend"]: row for row in report["backends"]}
    assert set(rows) == set(SHORT_BACKENDS)
    for backend, row in rows.items():
        assert set(row["anomalies"]) == set(PROPERTIES)
        assert sum(row["anomalies"].values()) == 0, (backend, row["anomaly_list"])
        assert row["operations"] > 100, (backend, row)
        assert row["events"] > row["operations"], (backend, row)
        assert sum(row["faults"].values()) >= 3, (backend, row["faults"])
    assert "| etcd |" in (out / "soak.md").read_text()
    readme = tmp_path / "README.md"
    readme.write_text((Path(__file__).parents[1] / "README.md").read_text())
    regenerate = [sys.executable, "-m", "discovery.cli", "readme", str(readme), "--soak", str(out / "soak.json")]
    options = ["--parity-dir", str(tmp_path / "none"), "--report", str(tmp_path / "none.json")]
    subprocess.run([*regenerate, *options], check=True, capture_output=True)
    assert f"Seed {SEED}" in readme.read_text()
    assert "| zookeeper |" in readme.read_text()


@pytest.fixture(scope="module")
def control_results() -> dict[str, list[Anomaly]]:
    """Every control and the clean run, at once: each is an independent in-process store."""
    runs = {control.name: control.backend for control in CONTROLS}
    # Four at a time: the properties that keep time (registrations-return) need a fair share of the GIL.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run_control, backend) for name, backend in runs.items()}
        futures["clean"] = pool.submit(run_control, MemoryBackend)
        for prop, tamper in TAMPERS.items():
            futures[f"tamper {prop}"] = pool.submit(run_control, MemoryBackend, tamper=tamper)
    return {name: future.result() for name, future in futures.items()}


def test_the_checker_finds_nothing_on_a_sound_backend(control_results: dict[str, list[Anomaly]]) -> None:
    assert control_results["clean"] == []


@pytest.mark.parametrize("control", CONTROLS, ids=[c.name for c in CONTROLS])
def test_each_faulty_backend_is_caught_by_its_property(
    control: Control, control_results: dict[str, list[Anomaly]]
) -> None:
    found = control_results[control.name]
    if control.expect is None:
        assert found == [], "the core masks this fault: the consumers must see a sound stream"
        return
    named = [a for a in found if a.property == control.expect]
    assert named, f"{control.name}: expected {control.expect}, found {sorted({a.property for a in found})}"
    anomaly = named[0]
    assert anomaly.property in str(anomaly)
    if control.expect != "alive":
        assert anomaly.key and anomaly.key in str(anomaly)
    assert f"revision {anomaly.revision}" in str(anomaly)


@pytest.mark.parametrize("prop", sorted(TAMPERS))
def test_a_tampered_recording_is_caught_by_its_property(prop: str, control_results: dict[str, list[Anomaly]]) -> None:
    named = [a for a in control_results[f"tamper {prop}"] if a.property == prop]
    assert len(named) == 1, control_results[f"tamper {prop}"]
    assert named[0].key in str(named[0])


def test_every_property_has_a_negative_control() -> None:
    covered = {c.expect for c in CONTROLS if c.expect is not None} | set(TAMPERS)
    assert covered == set(PROPERTIES)
