"""One benchmark run, end to end: choose the targets, start servers if needed, run, write the report.

Without ``--url`` the run starts its own etcd (v2 enabled: it serves both
``etcd://`` and ``etcd2://``) and ZooKeeper and adds ``memory://``; with
``--url`` it measures those registries instead. A backend whose plugin is not
installed, whose server did not start or that cannot be reached is skipped
with the reason, never given a number. The servers are stopped and every
child process killed however the run ends; on Ctrl-C what was measured so
far is still written, marked as interrupted.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import discovery
from discovery._secrets import redact_url
from discovery_bench.harness.machine import describe_machine, load_average
from discovery_bench.harness.runner import Runner
from discovery_bench.harness.servers import LocalServers, local_servers
from discovery_bench.harness.targets import BACKEND_ORDER, TRAITS, BenchTarget, Naming, targets_from_urls
from discovery_bench.profiles import get_profile
from discovery_bench.report.document import SCHEMA, Report, write_json
from discovery_bench.report.goals import evaluate_goals
from discovery_bench.report.markdown import render_markdown
from discovery_bench.report.parity import parity_summary
from discovery_bench.report.plots import make_plots
from discovery_bench.report.results import ResultSet
from discovery_bench.workloads import Context, workloads_for


@dataclass
class BenchOptions:
    """What the command line asked for.

    Attributes:
        urls: registries to measure; empty to start local servers.
        backends: the backends to measure, in report order.
        profile: ``smoke``, ``default`` or ``full``.
        out: the report directory.
        peers: also run the tooz peer-membership workload.
        workloads: run only these workloads (by name); None for every one.
    """

    urls: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=lambda: list(BACKEND_ORDER))
    profile: str = "default"
    out: Path = Path("bench-report")
    peers: bool = False
    workloads: frozenset[str] | None = None


def _probe(target: BenchTarget) -> str:
    """The server version through the registry; raises when the registry cannot be reached."""
    with target.connect() as registry:
        return registry.backend.server_version()


def _choose_targets(
    options: BenchOptions, servers: LocalServers | None, naming: Naming
) -> tuple[list[BenchTarget], dict[str, str]]:
    installed = set(discovery.available_backends())
    skipped: dict[str, str] = {}
    if options.urls:
        targets = [t for t in targets_from_urls(options.urls) if t.backend in options.backends]
    else:
        # An in-process store needs no server: the run makes its own, private to this process.
        targets = [
            BenchTarget(name, f"{name}://bench-{naming.run_id}/discovery-bench", local=True)
            for name in options.backends
            if TRAITS[name].in_process
        ]
        if servers is not None:
            found, skipped = servers.targets([b for b in options.backends if b in installed])
            targets += found
    chosen: list[BenchTarget] = []
    for target in targets:
        if target.backend not in installed:
            skipped[target.label] = _not_installed(target.backend)
        else:
            chosen.append(target)
    if not options.urls:
        for backend in options.backends:
            if backend not in installed:
                skipped.setdefault(backend, _not_installed(backend))
    order = {name: i for i, name in enumerate(BACKEND_ORDER)}
    chosen.sort(key=lambda t: (order.get(t.backend, len(order)), t.label))
    return chosen, skipped


def _not_installed(backend: str) -> str:
    return f"backend plugin not installed (pip install {TRAITS[backend].distribution})"


def run_bench(options: BenchOptions, out_console: Console, err_console: Console) -> Report:
    """Run the benchmark and write ``report.json``, ``report.md`` and the plots into ``options.out``.

    Returns:
        The report. ``report["run"]["interrupted"]`` is True when Ctrl-C ended it early.

    Raises:
        KeyError: an unknown profile name.
    """
    profile = get_profile(options.profile)
    started = time.monotonic()
    started_at, load_at_start = datetime.datetime.now(datetime.UTC), load_average()
    naming = Naming()
    ctx = Context(profile, naming)
    interrupted = False
    with contextlib.ExitStack() as stack:
        servers: LocalServers | None = None
        if not options.urls:
            err_console.print("starting local servers...")
            servers = stack.enter_context(local_servers(options.backends))
        targets, skipped = _choose_targets(options, servers, naming)
        versions = servers.versions() if servers is not None else {}
        ctx.server_pids = servers.pids() if servers is not None else {}
        backends: dict[str, dict[str, Any]] = {}
        reachable: list[BenchTarget] = []
        for target in targets:
            try:
                version = _probe(target)
            except Exception as exc:  # an unreachable registry is skipped, with the reason
                skipped[target.label] = f"cannot connect to {redact_url(target.url)}: {exc}"
                continue
            reachable.append(target)
            backends[target.label] = {"url": redact_url(target.url), "server_version": version, "local": target.local}
            server = target.traits.server
            if not servers and server is not None:
                versions.setdefault(server, version)
        results = ResultSet([t.label for t in reachable])
        runner = Runner(ctx, reachable, results, err_console)
        try:
            runner.run(workloads_for(ctx, options.peers, options.workloads))
        except KeyboardInterrupt:
            interrupted = True
            err_console.print("[yellow]interrupted: stopping servers, writing what was measured[/yellow]")
    workloads = results.to_json()
    report: Report = {
        "schema": SCHEMA,
        "run": {
            "profile": profile.name,
            "run_id": naming.run_id,
            "duration_s": round(time.monotonic() - started, 1),
            "workload_durations_s": runner.timings,
            "interrupted": interrupted,
            "mode": "urls" if options.urls else "local servers",
            "load_average_end": load_average(),
        },
        "machine": describe_machine(versions, started_at, load_at_start),
        "backends": backends,
        "skipped": skipped,
        "workloads": workloads,
        "goals": evaluate_goals(workloads, list(backends)),
        "parity": parity_summary(),
    }
    options.out.mkdir(parents=True, exist_ok=True)
    report["plots"] = make_plots(report, options.out)
    write_json(report, options.out / "report.json")
    (options.out / "report.md").write_text(render_markdown(report))
    return report
