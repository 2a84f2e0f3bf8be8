"""``discovery soak``: the randomized chaos soak, on local 3-member clusters, judged by the history checker.

Starts an etcd cluster (driven through ``etcd://`` and ``etcd2://``) and a
ZooKeeper ensemble, runs random traffic under a seeded random fault
schedule, checks every consumer's recorded history, writes ``soak.json`` and
``soak.md`` into ``--out`` and exits 1 when any anomaly was found. The seed
is printed first: ``--seed`` replays a failing run's schedule. With
``--controls`` it runs the negative controls instead: faulty backends the
checker must catch.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import click

from discovery.cli._context import CliState
from discovery.cli._errors import CliError
from discovery.cli._signals import until_stopped
from discovery.testing.soak import BACKENDS, PhaseResult, SoakConfig, run_soak, write_report
from discovery.testing.soak.runner import environment_seed


def _backends(value: str) -> tuple[str, ...]:
    chosen = tuple(b.strip() for b in value.split(",") if b.strip())
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose among {', '.join(BACKENDS)} (comma-separated); got {value!r}")
    return chosen


@click.command(
    "soak",
    epilog="\b\nExamples:\n  discovery soak --duration 120 --seed 7 --out /tmp/soak\n"
    "  discovery soak --backends zookeeper --duration 600\n  discovery soak --controls",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=6.0),
    default=1800.0,
    show_default=True,
    help="Seconds of traffic and faults in all, shared evenly by the backends.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of every random choice [default: new].")
@click.option(
    "--backends", "backends", default=",".join(BACKENDS), show_default=True, help="Comma-separated backends to soak."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("soak-report"),
    show_default=True,
    help="Directory for soak.json, soak.md and the raw logs.",
)
@click.option("--controls", is_flag=True, help="Run the negative controls (faulty backends) instead of the soak.")
@click.pass_obj
def soak(state: CliState, duration: float, seed: int | None, backends: str, out: Path, controls: bool) -> None:
    """Soak the backends under random traffic and faults; exit 1 if any watcher broke the event contract.

    Properties checked per consumer: ordered, unique, atomic, reliable,
    is-create, convergence, alive, and registrations-return.
    """
    if controls:
        _run_controls(state)
        return
    chosen = seed if seed is not None else environment_seed()
    state.out.print(f"soak: seed {chosen} (replay with --seed {chosen}), {duration:g} s over {backends}")
    config = SoakConfig(duration=duration, seed=chosen, backends=_backends(backends), out=out)

    def told(result: PhaseResult) -> None:
        verdict = f"{len(result.anomalies)} anomalies" if result.anomalies else "0 anomalies"
        state.out.print(
            f"{result.backend}: {result.operations:,} writes, {result.events:,} events checked, "
            f"{sum(result.faults.values())} faults, {sum(result.resyncs.values())} resyncs: {verdict}"
        )
        for anomaly in result.anomalies[:10]:
            state.out.print(f"  {anomaly}", markup=False)

    results: list[PhaseResult] = []
    with until_stopped():  # SIGTERM too unwinds: servers and traffic processes are stopped
        results = run_soak(config, on_phase=told)
    if len(results) < len(config.backends):
        raise CliError("the soak was stopped before its end: no report")
    write_report(config, results)
    state.note(f"report: {out / 'soak.md'}")
    found = sum(len(r.anomalies) for r in results)
    if found:
        raise CliError(f"{found} anomalies (seed {chosen}); see {out / 'soak.md'}")


def _run_controls(state: CliState) -> None:
    from discovery.testing.soak.controls import CONTROLS, run_control

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {control: pool.submit(run_control, control.backend) for control in CONTROLS}
    failed = 0
    for control, future in futures.items():
        found = {a.property for a in future.result()}
        caught = found == set() if control.expect is None else control.expect in found
        failed += not caught
        expected = control.expect or "nothing"
        state.out.print(f"{'ok' if caught else 'MISSED'}: {control.name}: expected {expected}, found {sorted(found)}")
    if failed:
        raise CliError(f"{failed} negative controls were not caught")
