"""How the ``discovery`` command shows things: tables, status trees, event lines, capability tables.

Everything shown is generated from the objects themselves, never written by
hand: instance tables from a :class:`~discovery.Snapshot`, the status tree
from :meth:`discovery.Registry.status` (green up, yellow degraded, red down,
with the word as well, for terminals without colour), and the capability
table from each installed backend's ``capabilities`` and ``options``.
:func:`capability_table_markdown` is the table the README embeds; a test
checks the README still matches it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

import discovery
from discovery._config import CORE_OPTIONS
from discovery._plugins import load_backend
from discovery.backend import Backend, Option
from discovery.capabilities import Capability
from discovery.errors import DiscoveryError
from discovery.models import Event, EventKind, Health, Instance, Notice, NoticeKind, Snapshot, StatusNode

HEALTH_STYLES: Mapping[Health, str] = {Health.UP: "green", Health.DEGRADED: "yellow", Health.DOWN: "red"}
"""The colour of each health: green up, amber (yellow) degraded, red down."""

EVENT_STYLES: Mapping[EventKind, str] = {
    EventKind.ADDED: "green",
    EventKind.UPDATED: "yellow",
    EventKind.REMOVED: "red",
}

YES = "✓"
NO = "✗"


# -- instances ---------------------------------------------------------------


def instance_json(instance: Instance) -> dict[str, Any]:
    """An instance as a JSON-ready dict (see :meth:`~discovery.Instance.as_dict`)."""
    return instance.as_dict()


def instance_target(instance: Instance) -> str:
    """Where to call an instance, as ``discovery pick`` prints it for shell scripts.

    ``address:port`` (an IPv6 address in brackets: ``[::1]:8080``), just the
    address when the instance has no port, and its id when it has no address.
    """
    if not instance.address:
        return instance.id
    if instance.port is None:
        return instance.address
    host = (
        f"[{instance.address}]"
        if ":" in instance.address and not instance.address.startswith("[")
        else instance.address
    )
    return f"{host}:{instance.port}"


def _meta_text(meta: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in meta.items())


def instance_table(snapshot: Snapshot, prefix: str) -> Table:
    """A table of the snapshot's instances, its size and revision in the caption.

    Args:
        snapshot: the instances, as :meth:`discovery.Registry.snapshot` returned them.
        prefix: the prefix they were listed under, for the title.
    """
    count = len(snapshot.instances)
    table = Table(
        title=f"instances under {prefix or '/'}",
        caption=f"{count} instance{'' if count == 1 else 's'} at revision {snapshot.revision}",
        title_justify="left",
        caption_justify="left",
    )
    for name in ("service", "id", "address", "port", "meta"):
        table.add_column(name, overflow="fold")
    table.add_column("revision", justify="right")
    for instance in snapshot.instances:
        table.add_row(
            instance.service,
            instance.id,
            instance.address or "",
            "" if instance.port is None else str(instance.port),
            _meta_text(instance.meta),
            str(instance.revision),
        )
    return table


# -- events ------------------------------------------------------------------


def event_json(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: kind, service, instance_id, instance, revision, resync, expired."""
    return {
        "kind": event.kind.name,
        "service": event.service,
        "instance_id": event.instance_id,
        "instance": None if event.instance is None else instance_json(event.instance),
        "revision": event.revision,
        "resync": event.resync,
        "expired": event.expired,
    }


def event_text(event: Event) -> Text:
    """One event as one line: ``ADDED buzz/api host-1 rev=12``, then ``resync``/``expired``/``deleted`` flags."""
    line = Text(event.kind.name, style=EVENT_STYLES[event.kind])
    line.append(f" {event.service} {event.instance_id} rev={event.revision}")
    if event.resync:
        line.append(" resync", style="magenta")
    if event.kind is EventKind.REMOVED and event.expired is not None:
        line.append(" expired" if event.expired else " deleted", style="dim")
    return line


_NOTICE_STYLES: Mapping[NoticeKind, str] = {
    NoticeKind.DISCONNECTED: "yellow",
    NoticeKind.CONNECTED: "green",
    NoticeKind.RESYNC_STARTED: "magenta",
    NoticeKind.RESYNCED: "magenta",
    NoticeKind.BROKEN: "red",
    NoticeKind.DEFINITIONS: "dim",
}


def notice_text(notice: Notice) -> Text:
    """A change in a watch's or cache's state as one line, for stderr: ``disconnected (reason): reconnecting``..."""
    reason = f" ({notice.reason})" if notice.reason else ""
    text = {
        NoticeKind.DISCONNECTED: f"disconnected{reason}: reconnecting; no change is lost meanwhile",
        NoticeKind.CONNECTED: f"connected again after rev={notice.revision}",
        NoticeKind.RESYNC_STARTED: f"resync{reason}: listing again; the differences follow, flagged resync",
        NoticeKind.RESYNCED: f"resynced at rev={notice.revision}",
        NoticeKind.BROKEN: f"broken{reason}: no more changes will come",
        NoticeKind.DEFINITIONS: f"service definitions changed after rev={notice.revision}",
    }[notice.kind]
    return Text(text, style=_NOTICE_STYLES[notice.kind])


# -- status tree -------------------------------------------------------------


def _count(node: StatusNode) -> str:
    if node.min_instances is not None:
        return f"{node.instances}/{node.min_instances}"
    return str(node.instances) if node.instances else ""


def status_label(node: StatusNode, name: str | None = None) -> Text:
    """One node of the status tree: ``● api  2/3  degraded (below-minimum)``, coloured by health.

    Args:
        node: the node.
        name: the name to show instead of the node's own (the root's is empty).
    """
    style = HEALTH_STYLES[node.health]
    label = Text("● ", style=style)
    label.append(name if name is not None else node.name, style="bold")
    count = _count(node)
    if count:
        label.append(f"  {count}")
    label.append(f"  {node.health.value}", style=style)
    if node.reason not in ("ok", "empty"):
        label.append(f" ({node.reason})", style=style)
    return label


def status_tree(root: StatusNode, title: str) -> Tree:
    """The monitoring view as a rich tree.

    Args:
        root: the node :meth:`discovery.Registry.status` returned.
        title: what to call the root (the prefix, or ``/``).
    """
    tree = Tree(status_label(root, title), guide_style="dim")

    def add(branch: Tree, node: StatusNode) -> None:
        for child in node.children:
            add(branch.add(status_label(child)), child)

    add(tree, root)
    return tree


# -- backends and capabilities -----------------------------------------------


@dataclass(frozen=True)
class BackendInfo:
    """One installed backend and the schemes that load it.

    Attributes:
        schemes: its URL schemes, its own name first (``zookeeper``, then ``zk``).
        backend: the class, or None if the plugin failed to load.
        error: why it failed to load.
    """

    schemes: tuple[str, ...]
    backend: type[Backend] | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """``zookeeper (zk)``: the name and its aliases."""
        first, *aliases = self.schemes
        return f"{first} ({', '.join(aliases)})" if aliases else first


def installed_backends() -> list[BackendInfo]:
    """Every installed backend, aliases grouped with their backend, sorted by name.

    A plugin that fails to load is listed with its error rather than hidden.
    """
    found: dict[type[Backend], list[str]] = {}
    broken: list[BackendInfo] = []
    for scheme in discovery.available_backends():
        try:
            backend = load_backend(scheme)
        except DiscoveryError as exc:
            broken.append(BackendInfo((scheme,), None, str(exc)))
            continue
        found.setdefault(backend, []).append(scheme)
    infos = [
        BackendInfo(tuple(sorted(schemes, key=lambda s: (s != backend.name, s))), backend)
        for backend, schemes in found.items()
    ]
    return sorted([*infos, *broken], key=lambda info: info.schemes[0])


def _has(info: BackendInfo, capability: Capability) -> bool:
    return info.backend is not None and capability in info.backend.capabilities


def capability_table(infos: Iterable[BackendInfo]) -> Table:
    """A table of capabilities (rows) and backends (columns), ✓ or ✗ (see :func:`capability_legend`)."""
    loaded = [info for info in infos if info.backend is not None]
    table = Table(title="capabilities", title_justify="left")
    table.add_column("capability", no_wrap=True)
    for info in loaded:
        table.add_column(info.label, justify="center", no_wrap=True)
    for capability in Capability:
        cells = [Text(YES, style="green") if _has(i, capability) else Text(NO, style="red") for i in loaded]
        table.add_row(capability.value, *cells)
    return table


def capability_legend() -> Table:
    """What each capability means, from :attr:`discovery.Capability.description`."""
    table = Table(title="what the capabilities mean", title_justify="left")
    table.add_column("capability", no_wrap=True)
    table.add_column("meaning", overflow="fold")
    for capability in Capability:
        table.add_row(capability.value, capability.description)
    return table


def load_failures(infos: Iterable[BackendInfo]) -> list[Text]:
    """One line per installed backend plugin that failed to load."""
    return [Text(f"{info.label}: failed to load: {info.error}", style="red") for info in infos if info.error]


def _default_text(option: Option) -> str:
    try:
        return json.dumps(option.default)
    except TypeError:
        return repr(option.default)


def options_table(infos: Iterable[BackendInfo]) -> Table:
    """Every option: the core's (accepted by every backend), then each backend's."""
    title = Text("options (from the URL query, the config file's [registry] table, or keyword arguments)")
    table = Table(title=title, title_justify="left")
    for name in ("backend", "option", "type", "default"):
        table.add_column(name, no_wrap=True)
    table.add_column("help", overflow="fold")
    sections: list[tuple[str, Mapping[str, Option]]] = [("(every backend)", CORE_OPTIONS)]
    sections += [(info.label, info.backend.options) for info in infos if info.backend is not None]
    for label, options in sections:
        for index, (name, option) in enumerate(options.items()):
            table.add_row(
                label if index == 0 else "", name, option.kind.__name__, _default_text(option), Text(option.help)
            )
    return table


def capability_table_markdown() -> str:
    """The capability table of the installed backends, as Markdown (the README embeds it).

    One row per backend (its aliases named with it, as in ``zookeeper (zk)``),
    one column per :class:`~discovery.Capability`, ✓ or ✗; backends that fail
    to load are left out.

    Returns:
        The table, ending with a newline.
    """
    capabilities = list(Capability)
    lines = [
        "| backend | " + " | ".join(f"`{c.value}`" for c in capabilities) + " |",
        "|---|" + "|".join(":---:" for _ in capabilities) + "|",
    ]
    for info in installed_backends():
        if info.backend is None:
            continue
        label = ", ".join(f"`{scheme}://`" for scheme in info.schemes)
        lines.append(f"| {label} | " + " | ".join(YES if _has(info, c) else NO for c in capabilities) + " |")
    return "\n".join(lines) + "\n"


def capability_legend_markdown() -> str:
    """What each capability means, as a Markdown list (to print under the table)."""
    return "".join(f"- `{c.value}`: {c.description}\n" for c in Capability)


def limits_table_markdown() -> str:
    """Each installed backend's declared limits, as Markdown: what validation refuses before sending.

    Returns:
        The table, ending with a newline.
    """
    lines = [
        "| backend | largest value | largest key, as sent | characters refused in names (beyond control and space) |",
        "|---|---:|---:|---|",
    ]
    for info in installed_backends():
        backend = info.backend
        if backend is None:
            continue
        label = ", ".join(f"`{scheme}://`" for scheme in info.schemes)
        refused = ", ".join(f"U+{low:04X}..U+{high:04X}" for low, high in backend.refused_characters) or "none"
        lines.append(f"| {label} | {backend.max_value_bytes:,} bytes | {backend.max_key_bytes:,} bytes | {refused} |")
    return "\n".join(lines) + "\n"
