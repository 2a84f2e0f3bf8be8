"""Prometheus service discovery from a service cache: target groups for ``http_sd_configs`` and ``file_sd_configs``.

Prometheus reads the same JSON list from an HTTP endpoint (the dashboard's
``/sd/prometheus``) or from a file it watches (``discovery sd --file``): a
list of target groups ``{"targets": ["host:port", ...], "labels": {...}}``.
:func:`target_groups` builds it from instances, :func:`targets` from a
:class:`~discovery.ServiceCache` (from memory, never from the server), and
:class:`TargetFile` keeps a file current, rewritten atomically on every
change. Prometheus keeps the ``__meta_*`` labels for relabelling only; keep
what you need with ``relabel_configs``, e.g. ``source_labels:
[__meta_discovery_service]`` with ``target_label: service``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from discovery._validation import check_prefix
from discovery.errors import InvalidValue, RegistryClosed

if TYPE_CHECKING:
    from discovery.cache import ServiceCache
    from discovery.models import Instance

__all__ = ["LABEL_PREFIX", "TargetFile", "TargetGroup", "Written", "label_name", "target_groups", "targets"]

LABEL_PREFIX = "__meta_discovery_"
"""The prefix of every label this module sets."""

_NOT_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")
_POLL_SECONDS = 0.5
_NEW_FILE_MODE = 0o644


class TargetGroup(TypedDict):
    """One target group: where Prometheus scrapes, and the labels every one of those targets gets."""

    targets: list[str]
    labels: dict[str, str]


def label_name(key: str) -> str:
    """The label of meta key ``key``: ``__meta_discovery_meta_<key>``, characters outside ``[a-zA-Z0-9_]`` as ``_``."""
    return f"{LABEL_PREFIX}meta_{_NOT_LABEL_CHARACTERS.sub('_', key)}"


def _label_value(value: object) -> str | None:
    """A scalar meta value as label text (``true``/``false``, numbers as JSON writes them); None for others."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def _labels(instance: Instance) -> dict[str, str]:
    labels = {f"{LABEL_PREFIX}service": instance.service}
    zone = _label_value(instance.meta.get("zone"))
    if zone is not None:
        labels[f"{LABEL_PREFIX}zone"] = zone
    # Sorted, so that of two keys sanitised to the same label the one that sorts first wins, every time.
    for key in sorted(instance.meta):
        value = _label_value(instance.meta[key])
        if value is not None:
            labels.setdefault(label_name(key), value)
    return labels


def _target(instance: Instance) -> str | None:
    if not instance.address or instance.port is None:
        return None
    address = instance.address
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{instance.port}"


def target_groups(instances: Iterable[Instance]) -> list[TargetGroup]:
    """The Prometheus target groups of ``instances``: one per service and distinct label set.

    Each group's targets are ``address:port`` (an IPv6 address in brackets,
    ``[::1]:9100``), sorted. Its labels are ``__meta_discovery_service``,
    ``__meta_discovery_zone`` (from ``meta["zone"]``, when the instance has
    one) and ``__meta_discovery_meta_<key>`` for every scalar meta value
    (string as is, number as JSON writes it, boolean as ``true``/``false``;
    lists, objects and nulls are left out), the key's characters outside
    ``[a-zA-Z0-9_]`` replaced by ``_`` (of two keys that become the same
    label, the one that sorts first wins). A target group's labels apply to
    all its targets, so the instances of a service whose zones or meta
    differ are split into one group per distinct label set; a meta value
    unique to each instance (a host name) gives one group per instance.

    Instances without an address or without a port are skipped: Prometheus
    needs both to scrape.

    Args:
        instances: the instances, in any order.

    Returns:
        The groups, sorted by service then labels: the same instances always
        give the same list, so a file is rewritten only when it changes.
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], set[str]] = {}
    for instance in instances:
        target = _target(instance)
        if target is None:
            continue
        labels = _labels(instance)
        groups.setdefault((instance.service, tuple(sorted(labels.items()))), set()).add(target)
    return [
        TargetGroup(targets=sorted(members), labels=dict(labels))
        for (_service, labels), members in sorted(groups.items())
    ]


def _within(service: str, prefix: str) -> bool:
    return not prefix or service == prefix or service.startswith(prefix + "/")


def targets(cache: ServiceCache, prefix: str = "") -> list[TargetGroup]:
    """The target groups of the instances under ``prefix`` in ``cache``, from memory (see :func:`target_groups`).

    Args:
        cache: the service cache to read.
        prefix: a service path at or below the cache's prefix (``""``: the cache's whole prefix).

    Raises:
        InvalidName: a bad prefix (field ``prefix``).
        InvalidValue: ``prefix`` lies outside the cache's prefix (field ``prefix``).
    """
    prefix = check_prefix(prefix) or cache.prefix
    if not _within(prefix, cache.prefix):
        raise InvalidValue("prefix", prefix, f"outside the cache's prefix {cache.prefix!r}")
    return target_groups(i for i in cache.snapshot().instances if _within(i.service, prefix))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the new one, never a part.

    The data goes to a temporary file in the same directory (so the rename
    stays on one file system), is flushed to disk, and is renamed over
    ``path``; the directory is flushed too, so the rename survives a crash.
    A new file gets mode 0644 (Prometheus often runs as another user); an
    existing one keeps its mode.

    Raises:
        OSError: the directory is missing or not writable, the disk is full...
    """
    directory = path.parent
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


@dataclass(frozen=True)
class Written:
    """One rewrite of a target file.

    Attributes:
        path: the file.
        groups: the target groups written.
        revision: the cache's revision they reflect.
    """

    path: Path
    groups: list[TargetGroup]
    revision: int

    @property
    def target_count(self) -> int:
        """How many targets the file lists."""
        return sum(len(group["targets"]) for group in self.groups)


class TargetFile:
    """A ``file_sd_configs`` file kept current from a cache: rewritten atomically whenever its targets change.

    Args:
        cache: the cache to read (its prefix, or ``prefix`` below it).
        path: the file; its directory must exist. JSON is also YAML, so
            Prometheus reads it under a ``.json``, ``.yml`` or ``.yaml`` name.
        prefix: the services to list (``""``: the cache's whole prefix).
        interval: how long to gather a burst of changes before writing once:
            at most one write per ``interval`` seconds, each at most
            ``interval`` seconds behind the cache.

    Raises:
        InvalidName: a bad prefix.
        InvalidValue: ``prefix`` outside the cache's prefix, or ``interval`` not positive.
    """

    def __init__(self, cache: ServiceCache, path: Path, prefix: str = "", interval: float = 0.2) -> None:
        if not interval > 0:
            raise InvalidValue("interval", interval, "must be positive")
        targets(cache, prefix)
        self.cache = cache
        self.path = path
        self.prefix = prefix
        self.interval = interval
        self._last: bytes | None = None

    def write(self) -> Written | None:
        """Write the file if its contents changed since the last write (always, the first time).

        Returns:
            What was written, or None when the file is already current.

        Raises:
            OSError: the file could not be written.
        """
        revision = self.cache.revision
        groups = targets(self.cache, self.prefix)
        data = (json.dumps(groups, indent=2) + "\n").encode()
        if data == self._last:
            return None
        write_atomically(self.path, data)
        self._last = data
        return Written(self.path, groups, revision)

    def run(self, stop: threading.Event | None = None, on_write: Callable[[Written], object] | None = None) -> None:
        """Write the file now, then after every burst of changes, until ``stop`` is set (or forever).

        Args:
            stop: ends the loop when set; None runs until interrupted (the caller's Ctrl-C).
            on_write: called with each rewrite, in this thread.

        Raises:
            WatchBroken: the cache's watch gave up; the file keeps the last targets.
            RegistryClosed: the cache was closed.
            OSError: the file could not be written.
        """
        stop = stop if stop is not None else threading.Event()
        changed = threading.Event()
        # Subscribed before the first write, so no change between the two is missed.
        subscription = self.cache.subscribe(lambda event: changed.set(), lambda notice: changed.set())
        try:
            self._write_and_tell(on_write)
            while not stop.is_set():
                if changed.wait(_POLL_SECONDS):
                    # Gather the rest of the burst, then write once.
                    stop.wait(self.interval)
                    changed.clear()
                    self._write_and_tell(on_write)
                if self.cache.broken is not None:
                    raise self.cache.broken
                if self.cache.closed:
                    raise RegistryClosed(f"cache of {self.cache.prefix!r} is closed")
        finally:
            subscription.cancel()

    def _write_and_tell(self, on_write: Callable[[Written], object] | None) -> None:
        written = self.write()
        if written is not None and on_write is not None:
            on_write(written)
