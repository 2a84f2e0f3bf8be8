"""The registry commands: register, deregister, define, undefine, ls, tree, watch, backends.

Each is a thin layer over the public API (:func:`discovery.connect` and
:class:`discovery.Registry`): parse the arguments, connect as the group's
options say, call one method, show the result with :mod:`discovery.cli._render`.
The long-running ones (``register``, ``watch``, ``tree --watch``) print
line by line, flushed, and stop cleanly on Ctrl-C, SIGTERM or SIGHUP: they
close what they opened (a registration is deregistered at once, not left to
expire) and exit 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.text import Text

import discovery
from discovery.cli._context import CliState, pass_state
from discovery.cli._render import (
    capability_legend,
    capability_legend_markdown,
    capability_table,
    capability_table_markdown,
    event_json,
    event_text,
    installed_backends,
    instance_json,
    instance_table,
    load_failures,
    options_table,
    status_tree,
)
from discovery.cli._signals import until_stopped
from discovery.models import StatusNode

_POLL_SECONDS = 1.0


def _json_line(state: CliState, data: dict[str, Any]) -> None:
    state.out.file.write(json.dumps(data) + "\n")
    state.out.file.flush()


def _line(state: CliState, text: Text | str) -> None:
    state.out.print(text, soft_wrap=True)
    state.out.file.flush()


@contextmanager
def _registry(state: CliState) -> Iterator[discovery.Registry]:
    registry = state.connect()
    try:
        yield registry
    finally:
        registry.close()


def parse_meta(pairs: Sequence[str], meta_json: str | None) -> dict[str, Any]:
    """Build instance metadata from ``--meta key=value`` pairs and ``--meta-json``.

    Values of ``--meta`` stay strings (``version=1.10`` must not become a number);
    ``--meta-json`` gives typed values and is applied first.

    Args:
        pairs: the ``key=value`` strings.
        meta_json: a JSON object, or None.

    Returns:
        The metadata.

    Raises:
        click.BadParameter: a pair without ``=``, or JSON that is not an object.
    """
    meta: dict[str, Any] = {}
    if meta_json is not None:
        try:
            loaded = json.loads(meta_json)
        except RecursionError:
            raise click.BadParameter("nested too deeply", param_hint="--meta-json") from None
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--meta-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--meta-json")
        meta.update(loaded)
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        meta[key] = value
    return meta


# -- register / deregister ---------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  discovery register buzz/buzzadmin/api host-1:8080 --address 10.0.0.5 --port 8080 --meta version=1.4.2
  discovery --url etcd://127.0.0.1:2379/services register buzz/api host-1 --ttl 5
"""
)
@click.argument("service")
@click.argument("instance_id", metavar="ID")
@click.option("--address", help="Where the instance listens.")
@click.option("--port", type=int, help="Its port, 1..65535.")
@click.option("--meta", "meta_pairs", multiple=True, metavar="KEY=VALUE", help="Metadata (a string); repeatable.")
@click.option("--meta-json", metavar="JSON", help="Metadata as a JSON object (typed values).")
@click.option(
    "--ttl",
    type=float,
    help="Seconds the instance outlives this process if it dies [default: the default_ttl option, 10].",
)
@pass_state
def register(
    state: CliState,
    service: str,
    instance_id: str,
    address: str | None,
    port: int | None,
    meta_pairs: tuple[str, ...],
    meta_json: str | None,
    ttl: float | None,
) -> None:
    """Register an instance and keep it alive until Ctrl-C.

    Stays in the foreground, showing the instance's state (lost, re-registered)
    as the server drops and restores its session. Ctrl-C, SIGTERM or SIGHUP
    deregister it at once and exit 0.
    """
    meta = parse_meta(meta_pairs, meta_json)
    with _registry(state) as registry:
        registration: discovery.Registration | None = None
        with until_stopped():
            registration = registry.register(service, instance_id, address=address, port=port, meta=meta, ttl=ttl)
            registration.on_change(lambda reg, alive: _show_state(state, reg, alive))
            ready = f"registered {registration.key} on {registry.url} (ttl {registration.ttl:g}s)"
            _line(state, Text(ready, style="green"))
            if "session_timeout" in registry.backend.options:
                state.note(
                    f"on {registry.backend.name} the session timeout (the session_timeout option), "
                    "not the ttl, decides how long the instance outlives a crash"
                )
            state.note("press Ctrl-C to deregister")
            _wait_forever()
        if registration is not None:
            _deregister_on_stop(state, registration)


def _deregister_on_stop(state: CliState, registration: discovery.Registration) -> None:
    """Deregister after a stop signal; a server that cannot be told is reported, and the exit stays 0.

    A stop signal asked to end the registration, and it ends either way: at
    once when the server is told, else by expiry after the ttl.
    """
    try:
        registration.close()
    except discovery.BackendError as exc:
        state.note(f"could not deregister {registration.key} now ({exc}); it expires after its ttl")
        return
    _line(state, f"deregistered {registration.key}")


def _show_state(state: CliState, registration: discovery.Registration, alive: bool) -> None:
    """Say when the server dropped the instance and when the registry brought it back."""
    if registration.closed:
        return
    if alive:
        message = f"re-registered {registration.key} (rev {registration.instance.revision})"
        _line(state, Text(message, style="green"))
    else:
        message = f"lost {registration.key}: the server dropped its session; re-registering"
        _line(state, Text(message, style="yellow"))


def _wait_forever() -> None:
    never = threading.Event()
    while not never.wait(_POLL_SECONDS):
        pass


@click.command(epilog="\b\nExample:\n  discovery deregister buzz/buzzadmin/api host-1:8080\n")
@click.argument("service")
@click.argument("instance_id", metavar="ID")
@pass_state
def deregister(state: CliState, service: str, instance_id: str) -> None:
    """Remove an instance now, whoever registered it (exit 5 if there is none)."""
    with _registry(state) as registry:
        registry.deregister(service, instance_id)
    _line(state, f"deregistered {service}/{instance_id}")


# -- define / undefine -------------------------------------------------------


@click.command(epilog="\b\nExample:\n  discovery define buzz/buzzadmin/api --min 2\n")
@click.argument("service")
@click.option(
    "--min", "min_instances", type=int, default=1, show_default=True, help="Instances needed for the service to be up."
)
@pass_state
def define(state: CliState, service: str, min_instances: int) -> None:
    """Declare a service and how many instances it needs to be up (persistent)."""
    with _registry(state) as registry:
        registry.define(service, min_instances=min_instances)
    _line(state, f"defined {service} (min {min_instances} instance{'' if min_instances == 1 else 's'})")


@click.command(epilog="\b\nExample:\n  discovery undefine buzz/buzzadmin/api\n")
@click.argument("service")
@pass_state
def undefine(state: CliState, service: str) -> None:
    """Remove a service definition; its instances stay (exit 5 if it is not defined)."""
    with _registry(state) as registry:
        registry.undefine(service)
    _line(state, f"undefined {service}")


# -- ls / tree / watch -------------------------------------------------------


@click.command(epilog="\b\nExamples:\n  discovery ls buzz\n  discovery ls --json | jq .id\n")
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per instance and line.")
@pass_state
def ls(state: CliState, prefix: str, as_json: bool) -> None:
    """List the instances under PREFIX (default: all) at one revision."""
    with _registry(state) as registry:
        snapshot = registry.snapshot(prefix)
    if as_json:
        for instance in snapshot.instances:
            _json_line(state, instance_json(instance))
        return
    state.out.print(instance_table(snapshot, prefix))


def _title(prefix: str) -> str:
    return prefix or "/"


@click.command(
    epilog="""\b
Examples:
  discovery tree buzz
  discovery tree --watch
"""
)
@click.argument("prefix", default="")
@click.option("--watch", "live", is_flag=True, help="Redraw on every change until Ctrl-C.")
@pass_state
def tree(state: CliState, prefix: str, live: bool) -> None:
    """Show the status tree under PREFIX: green up, yellow degraded, red down.

    Each node shows its live instances against the defined minimum (2/3) and,
    when it is not up, why (below-minimum, no-instances, parent-down, subtree).
    """
    with _registry(state) as registry:
        if not live:
            state.out.print(status_tree(registry.status(prefix), _title(prefix)))
            return
        with until_stopped(), registry.watch(prefix) as stream:
            _watch_tree(state, registry, stream, prefix)


def _tree_view(root: StatusNode, prefix: str, revision: int) -> Group:
    return Group(Text(f"--- revision {revision} ---", style="dim"), status_tree(root, _title(prefix)))


def _watch_tree(state: CliState, registry: discovery.Registry, watch: discovery.Watch, prefix: str) -> None:
    """Redraw the tree after every batch of events (and when definitions change), until interrupted.

    On a terminal the tree is redrawn in place (rich Live); into a pipe, each
    new state is printed below the last, so a reader sees every step.
    """
    revision = watch.snapshot.revision
    shown = registry.status(prefix)
    if state.out.is_terminal:
        with Live(_tree_view(shown, prefix, revision), console=state.out, auto_refresh=False) as display:
            while True:
                revision, current = _next_status(registry, watch, prefix, revision)
                if current != shown:
                    shown = current
                    display.update(_tree_view(shown, prefix, revision), refresh=True)
    else:
        state.out.print(_tree_view(shown, prefix, revision))
        state.out.file.flush()
        while True:
            revision, current = _next_status(registry, watch, prefix, revision)
            if current != shown:
                shown = current
                state.out.print(_tree_view(shown, prefix, revision))
                state.out.file.flush()


def _next_status(
    registry: discovery.Registry, watch: discovery.Watch, prefix: str, revision: int
) -> tuple[int, StatusNode]:
    """Wait until the watch has news (events, or a definition changed), then read the status."""
    while not watch.wait(_POLL_SECONDS):
        pass
    events = watch.get_batch(0)
    while events:
        revision = max(revision, events[-1].revision)
        events = watch.get_batch(0)
    return revision, registry.status(prefix)


@click.command(
    epilog="""\b
Examples:
  discovery watch buzz
  discovery watch --json | jq 'select(.kind == "REMOVED")'
  discovery watch nodes --since 1200
"""
)
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the snapshot first).")
@click.option("--since", type=click.IntRange(min=0), metavar="REV", help="Replay the changes after revision REV.")
@pass_state
def watch(state: CliState, prefix: str, as_json: bool, since: int | None) -> None:
    """Print every change under PREFIX (default: all), one line each, until Ctrl-C.

    First the snapshot's size and revision, then one line per event, in order,
    none lost: where the backend cannot prove it saw everything (a compaction,
    a lost connection), the watch re-lists and the difference comes flagged
    "resync". REMOVED events say "expired" or "deleted" where the backend
    can tell.
    """
    with _registry(state) as registry, until_stopped(), registry.watch(prefix, since=since) as stream:
        snapshot = stream.snapshot
        if as_json:
            _json_line(
                state,
                {
                    "kind": "SNAPSHOT",
                    "size": len(snapshot.instances),
                    "revision": snapshot.revision,
                    "since": since,
                    "instances": [instance_json(i) for i in snapshot.instances],
                },
            )
        elif since is not None:
            _line(state, Text(f"replaying the changes after rev={since}", style="dim"))
        else:
            count = len(snapshot.instances)
            _line(
                state,
                Text(f"snapshot: {count} instance{'' if count == 1 else 's'} at rev={snapshot.revision}", "dim"),
            )
        while True:
            event = stream.get(_POLL_SECONDS)
            if event is None:
                continue
            if as_json:
                _json_line(state, event_json(event))
            else:
                _line(state, event_text(event))


# -- backends ----------------------------------------------------------------


@click.command(epilog="\b\nExamples:\n  discovery backends\n  discovery backends --markdown\n")
@click.option("--markdown", is_flag=True, help="Print the capability table as Markdown (as in the README).")
@pass_state
def backends(state: CliState, markdown: bool) -> None:
    """List the installed backends, their capabilities and their options."""
    if markdown:
        state.out.file.write(capability_table_markdown() + "\n" + capability_legend_markdown())
        return
    infos = installed_backends()
    state.out.print(capability_table(infos))
    state.out.print(capability_legend())
    for line in load_failures(infos):
        state.err.print(line, soft_wrap=True)
    state.out.print(options_table(infos))


COMMANDS = (register, deregister, define, undefine, ls, tree, watch, backends)
"""The registry commands, in the order ``--help`` lists them."""
