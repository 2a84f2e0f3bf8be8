"""The registry commands: register, deregister, define, undefine, ls, tree, watch, pick, backends.

Each is a thin layer over the public API (:func:`discovery.connect` and
:class:`discovery.Registry`): parse the arguments, connect as the group's
options say, call one method, show the result with :mod:`discovery.cli._render`.
``watch``, ``tree --watch`` and ``pick`` read a :class:`discovery.ServiceCache`,
as a program would. The long-running ones (``register``, ``watch``,
``tree --watch``) print line by line, flushed, and stop cleanly on Ctrl-C,
SIGTERM or SIGHUP: they close what they opened (a registration is
deregistered at once, not left to expire) and exit 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

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
    instance_target,
    load_failures,
    notice_text,
    options_table,
    status_tree,
)
from discovery.cli._signals import until_stopped
from discovery.models import Notice, NoticeKind, Snapshot, StatusNode
from discovery.provider import STRATEGIES

_POLL_SECONDS = 1.0
_TREE_POLL_SECONDS = 1.0
"""How often ``tree --watch`` reads the tree again without an event: definitions change without one."""


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


# -- ls / tree / watch / pick ------------------------------------------------


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
        # The cache holds the whole top-level service, as Registry.status reads it: a definition
        # above PREFIX (parent-down) counts too.
        top = prefix.strip("/").split("/", 1)[0]
        with until_stopped(), registry.cache(top) as cache:
            changed = threading.Event()
            cache.subscribe(lambda event: changed.set(), lambda notice: changed.set())
            _watch_tree(state, cache, prefix, changed)


@dataclass(frozen=True)
class _TreeState:
    """What one drawing of ``tree --watch`` shows; it is drawn again when any of it but the revision changes."""

    root: StatusNode
    revision: int
    condition: str

    def differs(self, other: _TreeState) -> bool:
        return (self.root, self.condition) != (other.root, other.condition)

    def view(self, prefix: str) -> Group:
        header = f"--- revision {self.revision}{f' ({self.condition})' if self.condition else ''} ---"
        return Group(Text(header, style="dim"), status_tree(self.root, _title(prefix)))


def _tree_state(cache: discovery.ServiceCache, prefix: str) -> _TreeState:
    """The tree from the cache's memory, with the cache's revision and whether it is current.

    Raises:
        WatchBroken: the cache's watch gave up (the command exits 4).
    """
    state = cache.state
    if state.broken is not None:
        raise state.broken
    condition = "resyncing" if state.resyncing else "" if state.connected else "disconnected: may be stale"
    return _TreeState(cache.status(prefix), state.revision, condition)


def _watch_tree(state: CliState, cache: discovery.ServiceCache, prefix: str, changed: threading.Event) -> None:
    """Redraw the tree after every change the cache applies (and when definitions change), until interrupted.

    The cache's subscribers set ``changed``: on every event, and on every
    notice (a definition changed, a resync, a disconnection, a break). The
    wait is bounded by :data:`_TREE_POLL_SECONDS` only as a safeguard.
    On a terminal the tree is redrawn in place (rich Live); into a pipe, each
    new state is printed below the last, so a reader sees every step.
    """
    shown = _tree_state(cache, prefix)
    if state.out.is_terminal:
        with Live(shown.view(prefix), console=state.out, auto_refresh=False) as display:
            while True:
                current = _next_tree_state(cache, prefix, changed)
                if current.differs(shown):
                    shown = current
                    display.update(shown.view(prefix), refresh=True)
    else:
        state.out.print(shown.view(prefix))
        state.out.file.flush()
        while True:
            current = _next_tree_state(cache, prefix, changed)
            if current.differs(shown):
                shown = current
                state.out.print(shown.view(prefix))
                state.out.file.flush()


def _next_tree_state(cache: discovery.ServiceCache, prefix: str, changed: threading.Event) -> _TreeState:
    changed.wait(_TREE_POLL_SECONDS)
    # Cleared before reading: a change applied while the tree is read sets it again.
    changed.clear()
    return _tree_state(cache, prefix)


_Item = TypeVar("_Item", discovery.Event, Notice)


class _Relay:
    """Shows a cache's events and notices as its thread delivers them; ends the command when showing fails.

    The cache calls its subscribers on its own thread and logs what they
    raise, so an error in showing an event (a closed pipe) is kept here and
    raised in the command's thread by :meth:`wait`, as is the cache's
    ``WatchBroken``. Showing on the cache's thread keeps the events' order
    and lets a slow reader hold the cache back, and the watch under it
    resync, instead of queueing without bound.
    """

    def __init__(self, show_event: Callable[[discovery.Event], None], show_notice: Callable[[Notice], None]) -> None:
        self._show_event = show_event
        self._show_notice = show_notice
        self._ended = threading.Event()
        self._error: BaseException | None = None

    def event(self, event: discovery.Event) -> None:
        self._show(self._show_event, event)

    def notice(self, notice: Notice) -> None:
        if notice.kind is NoticeKind.BROKEN:
            # Told by the command's error line (exit 4), raised from wait().
            self._ended.set()
            return
        self._show(self._show_notice, notice)

    def _show(self, show: Callable[[_Item], None], item: _Item) -> None:
        if self._error is not None:
            return
        try:
            show(item)
        except BaseException as exc:  # raised again in the command's thread by wait()
            self._error = exc
            self._ended.set()

    def wait(self, cache: discovery.ServiceCache) -> None:
        """Return never: wait until showing failed or the cache broke, then raise that error.

        Raises:
            WatchBroken: the cache's watch gave up.
            BaseException: what showing an event or notice raised.
        """
        while not self._ended.wait(_POLL_SECONDS) and cache.broken is None:
            pass
        if self._error is not None:
            raise self._error
        if cache.broken is not None:
            raise cache.broken


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
    can tell. Disconnections and resyncs are noted on stderr.
    """

    def show_event(event: discovery.Event) -> None:
        if as_json:
            _json_line(state, event_json(event))
        else:
            _line(state, event_text(event))

    def show_notice(notice: Notice) -> None:
        state.err.print(notice_text(notice), soft_wrap=True)

    with _registry(state) as registry, until_stopped():
        if since is None:
            with registry.cache(prefix) as cache:
                relay = _Relay(show_event, show_notice)
                snapshot = cache.subscribe(relay.event, relay.notice).snapshot
                _watch_header(state, snapshot, as_json, None)
                relay.wait(cache)
        else:
            # A replay is history, not a current view: there is nothing for a cache to hold.
            with registry.watch(prefix, since=since) as stream:
                _watch_header(state, stream.snapshot, as_json, since)
                while True:
                    item = stream.next_item(_POLL_SECONDS)
                    if isinstance(item, Notice):
                        if item.kind is not NoticeKind.BROKEN:
                            show_notice(item)
                    elif item is not None:
                        show_event(item)


def _watch_header(state: CliState, snapshot: Snapshot, as_json: bool, since: int | None) -> None:
    """The first line of ``watch``: the snapshot (its instances too, in JSON), or the replay's start."""
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
        _line(state, Text(f"snapshot: {count} instance{'' if count == 1 else 's'} at rev={snapshot.revision}", "dim"))


@click.command(
    epilog="""\b
Examples:
  discovery pick buzz/api
  curl "http://$(discovery pick buzz/api --zone eu-1)/health"
  discovery pick buzz/api --strategy weighted || echo "no instance"
"""
)
@click.argument("service")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="round-robin",
    show_default=True,
    help="How the provider chooses; each run is a new provider, and round-robin starts at a random instance.",
)
@click.option("--zone", help='Prefer instances whose meta has this "zone"; others only when it has none.')
@pass_state
def pick(state: CliState, service: str, strategy: str, zone: str | None) -> None:
    """Print one instance of SERVICE to call, as ADDRESS:PORT (exit 5 if it has none).

    Just the address when the instance has no port, its id when it has no
    address. Opens a cache on SERVICE, picks once as a program's provider
    would, and closes it: for shell scripts and health probes.
    """
    with _registry(state) as registry, registry.cache(service) as cache:
        instance = cache.provider(service, strategy, zone=zone).pick()
    state.out.file.write(instance_target(instance) + "\n")
    state.out.file.flush()


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


COMMANDS = (register, deregister, define, undefine, ls, tree, watch, pick, backends)
"""The registry commands, in the order ``--help`` lists them."""
