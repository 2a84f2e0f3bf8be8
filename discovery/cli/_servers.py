"""``discovery servers up|status|down``: local etcd and ZooKeeper that outlive the command.

``up`` starts a detached supervisor (:mod:`discovery.cli._supervisor`, in a
session of its own) that runs the clusters through :mod:`discovery.servers`
and publishes their URLs in the state directory; it waits until the state
says ready, or prints the supervisor's log tail if it died. While they run,
every other command uses them when no URL is configured. ``down`` sends
SIGTERM to the supervisor's pid (checked against ``/proc`` first, never a
process looked up by name), waits until it and every server are gone, and
removes the state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from discovery.cli._context import CliState, pass_state
from discovery.cli._errors import CONFLICT, FAILURE, NOT_FOUND, CliError
from discovery.cli._state import (
    KINDS,
    LOG_FILE,
    READY,
    ServersState,
    clear_state,
    is_member,
    is_supervisor,
    locked,
    pid_alive,
    read_state,
)
from discovery.servers import find_etcd, find_java, find_zookeeper_classpath

_POLL = 0.1
_STOP_TIMEOUT = 60.0
_LOG_TAIL_LINES = 30


@click.group(
    epilog="""\b
Examples:
  discovery servers up                  # etcd and ZooKeeper, one member each
  discovery servers up --etcd --members 3
  discovery servers status
  discovery servers down
"""
)
def servers() -> None:
    """Start, inspect and stop local etcd and ZooKeeper servers that keep running in the background.

    Their data and logs live in the state directory (--state-dir,
    $DISCOVERY_STATE_DIR, default ~/.local/state/discovery). While they run,
    the other commands use them when no --url, $DISCOVERY_URL or config file
    names a registry.
    """


def log_tail(state_dir: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the supervisor's log (empty when there is none)."""
    try:
        text = (state_dir / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _urls_table(state: ServersState) -> Table:
    table = Table(title="local servers", title_justify="left")
    table.add_column("scheme", no_wrap=True)
    table.add_column("URL", no_wrap=True)
    for scheme, url in state.urls.items():
        table.add_row(scheme, url)
    return table


def _members_table(state: ServersState) -> Table:
    table = Table(title=f"supervisor pid {state.supervisor_pid}", title_justify="left")
    for name in ("server", "version", "member", "pid", "port", "state"):
        table.add_column(name, no_wrap=True)
    for cluster in state.clusters:
        for member in cluster.members:
            alive = member.pid is not None and pid_alive(member.pid)
            table.add_row(
                cluster.kind,
                cluster.version,
                member.name,
                str(member.pid),
                str(member.client_port),
                Text("running", style="green") if alive else Text("gone", style="red"),
            )
    return table


def _preflight(kinds: list[str]) -> None:
    """Fail at once, with the packages to install, when a server program is missing."""
    if "etcd" in kinds:
        find_etcd()
    if "zookeeper" in kinds:
        find_java()
        find_zookeeper_classpath()


def _wait_ready(state_dir: Path, process: subprocess.Popen[bytes], timeout: float) -> ServersState:
    """Wait until the supervisor says ready; raise with its log tail if it fails, dies or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        current = read_state(state_dir)
        mine = current is not None and current.supervisor_pid == process.pid
        if mine and current is not None and current.status == READY:
            return current
        code = process.poll()
        if code is not None:
            error = current.error if mine and current is not None and current.error else f"exited with code {code}"
            clear_state(state_dir)
            first, _, _ = error.partition("\n")
            raise CliError(
                f"local servers failed to start: {first}",
                FAILURE,
                f"--- last lines of {state_dir / LOG_FILE} ---\n{log_tail(state_dir)}",
            )
        if time.monotonic() >= deadline:
            _stop_supervisor(state_dir, process.pid)
            raise CliError(
                f"local servers not ready after {timeout:g} s; stopped them",
                FAILURE,
                f"--- last lines of {state_dir / LOG_FILE} ---\n{log_tail(state_dir)}",
            )
        time.sleep(_POLL)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return the ones still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if pid_alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL)


def _stop_supervisor(state_dir: Path, pid: int) -> None:
    """SIGTERM the supervisor (after checking the pid is it), wait for it, SIGKILL it if it hangs."""
    if not (pid_alive(pid) and is_supervisor(pid, state_dir)):
        return
    os.kill(pid, signal.SIGTERM)
    if _wait_gone([pid], _STOP_TIMEOUT) and is_supervisor(pid, state_dir):
        os.kill(pid, signal.SIGKILL)
        _wait_gone([pid], _STOP_TIMEOUT)


def _stop_leftover_members(state_dir: Path, state: ServersState) -> None:
    """Kill the server processes a dead supervisor left behind (each checked against ``/proc`` first)."""
    left = _wait_gone(state.pids(), 5.0)
    for pid in left:
        if is_member(pid, state_dir):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(left, _STOP_TIMEOUT)


@servers.command(
    epilog="""\b
Examples:
  discovery servers up
  discovery servers up --zookeeper --members 3
  discovery --state-dir /tmp/discovery servers up --etcd
"""
)
@click.option("--etcd", is_flag=True, help="Start etcd (serves etcd:// and etcd2://).")
@click.option("--zookeeper", is_flag=True, help="Start ZooKeeper (serves zookeeper://).")
@click.option("--members", type=click.IntRange(min=1, max=7), default=1, show_default=True, help="Members per cluster.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait until ready.")
@pass_state
def up(state: CliState, etcd: bool, zookeeper: bool, members: int, timeout: float) -> None:
    """Start local servers (default: etcd and ZooKeeper) and keep them running after the command returns.

    Exits 6 if other servers already run in this state directory.
    """
    kinds = [kind for kind, wanted in zip(KINDS, (etcd, zookeeper), strict=True) if wanted] or list(KINDS)
    state_dir = state.state_dir
    with locked(state_dir):
        current = read_state(state_dir)
        if current is not None and pid_alive(current.supervisor_pid):
            if set(kinds) <= set(current.kinds) and members == current.members:
                state.note(f"already running (supervisor pid {current.supervisor_pid}, state dir {state_dir})")
                state.out.print(_urls_table(current))
                return
            raise CliError(
                f"other local servers already run in {state_dir} ({', '.join(current.kinds)}, "
                f"{current.members} member(s)); run 'discovery servers down' first",
                CONFLICT,
            )
        if current is not None:
            _stop_leftover_members(state_dir, current)
        clear_state(state_dir)
        _preflight(kinds)
        flags = [f"--{kind}" for kind in kinds]
        command = [sys.executable, "-m", "discovery.cli._supervisor", "--state-dir", str(state_dir), *flags]
        state.note(f"starting {' and '.join(kinds)} ({members} member{'s' if members > 1 else ''}) in {state_dir}")
        with (state_dir / LOG_FILE).open("ab") as log:
            process = subprocess.Popen(
                [*command, "--members", str(members)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=state_dir,
                start_new_session=True,
            )
        try:
            ready = _wait_ready(state_dir, process, timeout)
        except KeyboardInterrupt:
            # Interrupted while waiting: do not leave half-started servers behind.
            _stop_supervisor(state_dir, process.pid)
            clear_state(state_dir)
            raise
    state.out.print(_urls_table(ready))
    first = next(iter(ready.urls.values()))
    state.note(f"other discovery commands now use them; for your programs: export DISCOVERY_URL={first}")
    state.note("stop them with: discovery servers down")


@servers.command(epilog="\b\nExamples:\n  discovery servers status\n  discovery servers status --json\n")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON (URLs, pids).")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Show the running local servers: URLs, members, pids (exit 5 if none run)."""
    current = read_state(state.state_dir)
    if current is None:
        raise CliError(f"no local servers in {state.state_dir} (start them with 'discovery servers up')", NOT_FOUND)
    alive = pid_alive(current.supervisor_pid)
    if as_json:
        data = current.to_json()
        data["supervisor_alive"] = alive
        data["state_dir"] = str(state.state_dir)
        state.out.file.write(json.dumps(data) + "\n")
        return
    if not alive:
        raise CliError(
            f"stale state in {state.state_dir}: supervisor pid {current.supervisor_pid} is gone "
            "(run 'discovery servers down' to clean up)",
            NOT_FOUND,
        )
    if current.status != READY:
        state.out.print(Text(f"{current.status} (supervisor pid {current.supervisor_pid})", style="yellow"))
    state.out.print(_urls_table(current))
    state.out.print(_members_table(current))


@servers.command(epilog="\b\nExample:\n  discovery servers down\n")
@pass_state
def down(state: CliState) -> None:
    """Stop the local servers and remove their state; nothing to do is not an error."""
    state_dir = state.state_dir
    with locked(state_dir):
        current = read_state(state_dir)
        if current is None:
            clear_state(state_dir)
            state.out.print(f"no local servers running in {state_dir}")
            return
        _stop_supervisor(state_dir, current.supervisor_pid)
        _stop_leftover_members(state_dir, current)
        clear_state(state_dir)
    kinds = ", ".join(cluster.kind for cluster in current.clusters) or "nothing"
    state.out.print(f"stopped {kinds} (supervisor pid {current.supervisor_pid})")
