"""``discovery demo seed``: the story that started the project, replayed on every backend side by side.

A writer registers COUNT instances with a short ttl and dies without a word
(a registrant subprocess killed with SIGKILL; on ``memory://``, which lives in
one process, an in-process registry that abandons its leases): COUNT ADDED
plus COUNT expiries, 2 x COUNT events. Two watchers count what they see on
the same server: the naive re-watch loop of the story
(:class:`discovery.testing.naive.NaiveRewatchLoop`) and a discovery watch.
Each backend runs under a fresh root, so repeated runs never see each other.
Servers come from ``--url``, else the running local servers, else the
command starts its own through :mod:`discovery.servers` and stops them at the end.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import IO

import click
from rich.table import Table
from rich.text import Text

import discovery
from discovery._plugins import load_backend
from discovery._secrets import redact_url
from discovery.cli._context import CliState, pass_state
from discovery.cli._errors import FAILURE, USAGE, CliError
from discovery.cli._state import running
from discovery.models import Event, EventKind
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.naive import NaiveRewatchLoop

DEMO_BACKENDS = ("etcd", "etcd2", "zookeeper", "memory")
SERVICE = "nodes"
_SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class SeedResult:
    """What one backend's run saw.

    Attributes:
        backend: the backend's name.
        url: the registry URL, with the run's fresh root (as shown: passwords masked).
        expected: 2 x count: every registration and every expiry.
        naive: events the naive re-watch loop saw.
        discovery: events the discovery watch saw.
        resyncs: how many times the discovery watch re-listed to close a gap.
        seconds: how long the run took.
    """

    backend: str
    url: str
    expected: int
    naive: int
    discovery: int
    resyncs: int
    seconds: float


@click.group(epilog="\b\nExample:\n  discovery demo seed --count 100\n")
def demo() -> None:
    """Demonstrations of the problem discovery solves."""


def with_root(url: str, root: str) -> str:
    """``url`` with ``root`` appended to its path, its query kept.

    Args:
        url: a registry URL, like ``etcd://127.0.0.1:2379/services``.
        root: a path segment, like ``demo-1a2b``.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/") + "/" + root
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def with_session_timeout(url: str, ttl: float) -> str:
    """``url`` with ``session_timeout=ttl`` when its backend ties expiry to a session timeout (ZooKeeper).

    ZooKeeper's ttl is its session timeout, set per connection; without this the
    writer's instances would outlive it by the default 10 s instead of ``ttl``.
    """
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    if "session_timeout" in query or "session_timeout" not in load_backend(parts.scheme.lower()).options:
        return url
    query["session_timeout"] = f"{ttl:g}"
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class _Registrant:
    """The writer of the story: registers the instances, then dies without deregistering."""

    def __init__(self, url: str, ids: list[str], ttl: float, timeout: float) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._registry: discovery.Registry | None = None
        if url.startswith("memory:"):
            # memory:// lives in this process: the writer is a second registry here, and
            # abandoning its leases is how it "dies" (nothing is deregistered).
            self._registry = discovery.connect(url)
            for instance_id in ids:
                self._registry.register(SERVICE, instance_id, ttl=ttl)
            return
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115  # closed by close()
        command = [sys.executable, "-m", "discovery.testing._registrant", url, SERVICE, f"{ttl:g}", *ids]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        line = _read_line(self._process, timeout)
        if not line.startswith("ready"):
            self.kill()
            self._stderr.seek(0)
            raise CliError(f"the registrant did not start: {line.strip() or 'no output'}", FAILURE, self._stderr.read())

    def kill(self) -> None:
        """Die at once: SIGKILL the process, or abandon the in-process leases."""
        if self._registry is not None:
            self._registry.backend.abandon()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            self._process.wait()

    def close(self) -> None:
        """Release what is left (the in-process registry, the process's pipes)."""
        self.kill()
        if self._registry is not None:
            self._registry.close()
        if self._process is not None:
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._stderr.close()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output, or ``""`` if none came within ``timeout`` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


def _collect(watch: discovery.Watch, events: list[Event], done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        event = watch.get(min(remaining, 1.0))
        if event is not None:
            events.append(event)


def seed_one(url: str, count: int, ttl: float, timeout: float) -> SeedResult:
    """Run the story once on one registry.

    Args:
        url: the registry URL; the run works under a fresh root below it.
        count: how many instances the writer registers.
        ttl: their ttl, in seconds.
        timeout: seconds each phase (all registered, all expired) may take.

    Returns:
        What each watcher saw.

    Raises:
        DiscoveryError: the registry failed.
        CliError: the registrant process did not start.
    """
    started = time.monotonic()
    url = with_session_timeout(with_root(url, f"demo-{secrets.token_hex(4)}"), ttl)
    ids = [f"n{i}" for i in range(count)]
    events: list[Event] = []
    with discovery.connect(url) as registry:
        naive = NaiveRewatchLoop(registry, SERVICE).start()
        try:
            with registry.watch(SERVICE) as watch:
                writer = _Registrant(url, ids, ttl, timeout)
                try:
                    added = lambda: sum(e.kind is EventKind.ADDED for e in events) >= count  # noqa: E731
                    _collect(watch, events, added, timeout)
                    writer.kill()
                    removed = lambda: sum(e.kind is EventKind.REMOVED for e in events) >= count  # noqa: E731
                    _collect(watch, events, removed, timeout + ttl)
                finally:
                    writer.close()
                resyncs = watch.resyncs
            # The naive loop may still be handing over the last event it caught.
            time.sleep(_SETTLE_SECONDS)
        finally:
            seen = naive.stop()
        return SeedResult(
            registry.backend.name, registry.url, 2 * count, len(seen), len(events), resyncs, time.monotonic() - started
        )


@contextlib.contextmanager
def _servers_for(state: CliState, backends: list[str]) -> Iterator[dict[str, str]]:
    """A URL per backend: the running local servers', else servers started (and stopped) here."""
    urls = {"memory": f"memory://demo-{secrets.token_hex(4)}"}
    needed = {"etcd" if backend in ("etcd", "etcd2") else backend for backend in backends} - {"memory"}
    current = running(state.state_dir)
    if current is not None:
        urls.update(current.urls)
        needed -= {kind for kind in ("etcd", "zookeeper") if kind in current.urls}
        state.note(f"using the local servers of {state.state_dir}")
    started: list[EtcdCluster | ZooKeeperCluster] = []
    try:
        for kind in sorted(needed):
            state.note(f"starting a local {kind} for the demo (stopped at the end)")
            if kind == "etcd":
                etcd = EtcdCluster().start()
                started.append(etcd)
                urls.update(etcd=etcd.url("etcd"), etcd2=etcd.url("etcd2"))
            else:
                zookeeper = ZooKeeperCluster().start()
                started.append(zookeeper)
                urls["zookeeper"] = zookeeper.url("zookeeper")
        yield urls
    finally:
        for cluster in started:
            cluster.stop()


def _results_table(results: list[SeedResult], count: int) -> Table:
    table = Table(
        title=f"{count} instances with a ttl, writer killed: {2 * count} events",
        title_justify="left",
    )
    table.add_column("backend", no_wrap=True)
    table.add_column("naive loop", justify="right", no_wrap=True)
    table.add_column("discovery watch", justify="right", no_wrap=True)
    table.add_column("resyncs", justify="right")
    table.add_column("seconds", justify="right")
    for result in results:
        naive_style = "green" if result.naive == result.expected else "red"
        complete_style = "green" if result.discovery == result.expected else "red"
        table.add_row(
            result.backend,
            Text(f"{result.naive}/{result.expected}", style=naive_style),
            Text(f"{result.discovery}/{result.expected}", style=complete_style),
            str(result.resyncs),
            f"{result.seconds:.1f}",
        )
    return table


def _parse_backends(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in DEMO_BACKENDS]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose among {','.join(DEMO_BACKENDS)}", param_hint="--backend"
        )
    return list(dict.fromkeys(names))


@demo.command(
    epilog="""\b
Examples:
  discovery demo seed
  discovery demo seed --backend etcd2,memory --count 200
  discovery demo seed --url zookeeper://10.0.0.1:2181/services --count 50
"""
)
@click.option(
    "--backend",
    "backend_list",
    default=",".join(DEMO_BACKENDS),
    show_default=True,
    help="Comma-separated backends to run (ignored with --url).",
)
@click.option("--url", "urls", multiple=True, help="Run on this registry instead (repeatable); a fresh root is used.")
@click.option("--count", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Instances.")
@click.option("--ttl", type=float, default=2.0, show_default=True, help="Their ttl, seconds (etcd needs >= 2).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds each phase may take.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per backend and line.")
@pass_state
def seed(
    state: CliState, backend_list: str, urls: tuple[str, ...], count: int, ttl: float, timeout: float, as_json: bool
) -> None:
    """Replay the story: COUNT instances with a ttl, the writer dies; who sees all 2 x COUNT events?

    The naive loop (a new watch "from now" after every event, as in
    'while True: client.watch(...)') misses what happens between two
    watches; the discovery watch sees every event. Exits 1 if the discovery
    watch ever misses one.
    """
    given = list(urls) or ([state.url] if state.url else [])
    if given and state.url and urls:
        raise CliError("give --url to 'demo seed' or to 'discovery', not both", USAGE)
    results: list[SeedResult] = []
    with contextlib.ExitStack() as stack:
        if given:
            targets = given
        else:
            backends = _parse_backends(backend_list)
            known = stack.enter_context(_servers_for(state, backends))
            targets = [known[backend] for backend in backends]
        for url in targets:
            state.note(f"running on {redact_url(url)} ({count} instances, ttl {ttl:g}s)")
            result = seed_one(url, count, ttl, timeout)
            state.note(
                f"{result.backend}: naive loop {result.naive}/{result.expected}, "
                f"discovery watch {result.discovery}/{result.expected}"
            )
            results.append(result)
            if as_json:
                state.out.file.write(json.dumps(asdict(result)) + "\n")
                state.out.file.flush()
    if not as_json:
        state.out.print(_results_table(results, count))
    missed = [r.backend for r in results if r.discovery != r.expected]
    if missed:
        raise CliError(f"the discovery watch missed events on {', '.join(missed)}", FAILURE)
