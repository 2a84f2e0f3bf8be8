"""The ``discovery bench`` command: options, signals, exit codes; the work is in :mod:`~discovery_bench.run`.

``bench_command`` is a plain :class:`click.Command` that this distribution
declares in the ``discovery.commands`` entry-point group, where the
``discovery`` CLI finds it; ``python -m discovery_bench`` runs it alone.
SIGTERM and SIGHUP are turned into the same orderly stop as Ctrl-C: servers
stopped, children killed, a partial report written, exit status 130.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
from rich.console import Console

from discovery_bench.harness.targets import BACKEND_ORDER, backend_label
from discovery_bench.profiles import PROFILES

_EPILOG = """\b
Examples:
  discovery bench                                  # local etcd + ZooKeeper, default profile (under 15 min)
  discovery bench --profile smoke --out /tmp/b     # every workload, tiny sizes (under a minute)
  discovery bench --workloads scale,propagation    # only these workloads, default sizes
  discovery bench --url etcd://10.0.0.1:2379/bench --url zk://10.0.0.2:2181/bench
  discovery readme README.md                       # refresh the README's sections from bench-report/
"""


def _workloads(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    from discovery_bench.workloads import WORKLOAD_NAMES  # heavy (client libraries): only when asked for

    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(names - set(WORKLOAD_NAMES))
    if unknown or not names:
        raise click.BadParameter(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOAD_NAMES)}")
    return names


def _backends(value: str) -> list[str]:
    names = [backend_label(name.strip()) for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_ORDER]
    if unknown:
        raise click.BadParameter(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKEND_ORDER)}")
    return names


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Outside the main thread (a test runner's worker) signals cannot be handled: leave them alone.
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("bench", epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="Measure this existing registry instead of starting local servers (repeatable, one per backend).",
)
@click.option(
    "--backends",
    default=",".join(BACKEND_ORDER),
    show_default=True,
    help="Comma-separated backends to measure.",
)
@click.option(
    "--profile", type=click.Choice(list(PROFILES)), default="default", show_default=True, help="Sizes and rounds."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-report"),
    show_default=True,
    help="Directory for report.md, report.json and the plots.",
)
@click.option("--peers", is_flag=True, help="Also measure tooz group membership on the same servers.")
@click.option(
    "--workloads",
    "workload_names",
    metavar="NAMES",
    help="Comma-separated workloads to run, in their usual order (default: all but peers), e.g. scale,propagation.",
)
def bench_command(
    urls: tuple[str, ...], backends: str, profile: str, out: Path, peers: bool, workload_names: str | None
) -> None:
    """Compare the backends: registration, watch latency, completeness, failure detection, keep-alive, resync.

    Starts a local etcd (serving etcd:// and etcd2://) and ZooKeeper unless
    --url is given, runs every workload on every backend in interleaved
    rounds, prints a summary and writes DIR/report.md, DIR/report.json and
    PNG plots.
    """
    from discovery_bench.report.summary import print_summary
    from discovery_bench.run import BenchOptions, run_bench

    try:
        only = _workloads(workload_names)
    except click.BadParameter as exc:
        exc.param_hint = "'--workloads'"
        raise
    options = BenchOptions(
        urls=list(urls),
        backends=_backends(backends),
        profile=profile,
        out=out,
        peers=peers,
        workloads=only,
    )
    # Outside a terminal (a log, CI) rich would wrap at 80 columns; the tables read better wider.
    out_console = Console() if sys.stdout.isatty() else Console(width=140)
    err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=140)
    with _stop_on_signals():
        try:
            report = run_bench(options, out_console, err_console)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/yellow]")
            sys.exit(130)
    print_summary(report, out_console, out)
    if report["run"]["interrupted"]:
        sys.exit(130)
    if not report["backends"]:
        err_console.print("[red]no backend could be measured[/red]")
        sys.exit(1)
