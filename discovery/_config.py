"""Configuration: where the URL and options come from, and in which order.

The URL is the first of: the ``url`` argument, ``$DISCOVERY_URL``, ``url`` in
the ``[registry]`` table of the config file, ``memory://``. The config file
is the ``config`` argument, else ``$DISCOVERY_CONFIG``, else ``./discovery.toml``
when it exists. Options, lowest to highest precedence: defaults, the config
file's ``[registry]`` table, the URL's query string, keyword arguments. An
option neither the core nor the backend declares is an error naming it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from discovery._plugins import load_backend
from discovery._validation import DEFAULT_META_LIMIT, VALUE_OVERHEAD
from discovery.backend import Backend, Option, Target
from discovery.errors import ConfigurationError, InvalidOption

DEFAULT_URL = "memory://"

CORE_OPTIONS: Mapping[str, Option] = {
    "default_ttl": Option(float, 10.0, "ttl in seconds of registrations that give none", positive=True),
    "meta_limit": Option(int, DEFAULT_META_LIMIT, "largest encoded instance metadata, in bytes", positive=True),
    "buffer_size": Option(int, 10_000, "events a watch buffers before a slow consumer gets a resync", positive=True),
    "reconnect_timeout": Option(
        float, 30.0, "seconds a watch keeps trying to resume before it raises WatchBroken", positive=True
    ),
}
"""Options every backend accepts."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """The core's options, resolved."""

    default_ttl: float
    meta_limit: int
    buffer_size: int
    reconnect_timeout: float


@dataclass(frozen=True)
class Resolved:
    """Everything :func:`discovery.connect` needs: the URL, the backend class, its target, the core settings."""

    url: str
    backend: type[Backend]
    target: Target
    settings: Settings


def _convert(name: str, option: Option, value: object) -> object:
    """``value`` as the option's kind, checked against what the option declares: the only conversion there is."""
    converted = _converted(name, option, value)
    if isinstance(converted, float) and not math.isfinite(converted):
        raise InvalidOption(name, value, "must be a finite number")
    if option.positive and isinstance(converted, int | float) and converted <= 0:
        raise InvalidOption(name, value, "must be positive")
    if option.choices and isinstance(converted, str):
        converted = converted.lower()
        if converted not in option.choices:
            raise InvalidOption(name, value, f"expected one of {', '.join(repr(c) for c in option.choices)}")
    return converted


def _converted(name: str, option: Option, value: object) -> object:
    kind = option.kind
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError(text)
                return text.lower() in _TRUE
            return kind(text)
        except ValueError:
            raise InvalidOption(name, value, f"expected {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidOption(name, value, f"expected {kind.__name__}")
    return value


def config_path(path: Path | None) -> Path:
    """The config file to read: ``path``, else ``$DISCOVERY_CONFIG``, else ``./discovery.toml``."""
    return path if path is not None else Path(os.environ.get("DISCOVERY_CONFIG", "discovery.toml"))


def read_config(path: Path | None) -> dict[str, object]:
    """The ``[registry]`` table of the config file; empty when no file was named and none exists.

    Raises:
        ConfigurationError: a named file is missing, or the file is unreadable
            (not UTF-8, not TOML, ``[registry]`` not a table).
    """
    explicit = path is not None or "DISCOVERY_CONFIG" in os.environ
    path = config_path(path)
    if not path.exists():
        if explicit:
            raise ConfigurationError(f"config file {str(path)!r} does not exist")
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"config file {str(path)!r}: {exc}") from exc
    table = document.get("registry", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"config file {str(path)!r}: [registry] must be a table")
    return dict(table)


def _redacted(url: str) -> str:
    """The URL with any ``user:password@`` part masked, for error messages."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def _parse_hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    if "@" in netloc:
        raise InvalidOption(
            "url", url, "credentials in the URL are not read; give them as options (username=..., password=...)"
        )
    if not netloc:
        return ()
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, port = part, default_port
        if part.startswith("["):
            host, bracket, rest = part[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise InvalidOption("url", url, f"bad IPv6 host {part!r}; expected [address]:port")
            if rest:
                port = _port(rest[1:], url)
        elif ":" in part:
            host, _, text = part.rpartition(":")
            port = _port(text, url)
        if not host or any(not c.isprintable() or c.isspace() or c in "[]/" for c in host):
            raise InvalidOption("url", url, f"bad host {part!r} (an empty or malformed entry in the host list)")
        hosts.append((host, port))
    return tuple(hosts)


def _port(text: str, url: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise InvalidOption("url", url, f"bad port {text!r}")
    return int(text)


def _root(path: str, url: str) -> str:
    """The root from the URL's path: ``/a/b`` (``""`` for none), each segment a plain name."""
    stripped = path.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidOption("url", url, f"root segment {segment!r}: empty, '.' and '..' are not names")
        if not all(c.isalnum() or c in "._:@+=-~" for c in segment):
            raise InvalidOption("url", url, f"root segment {segment!r}: allowed are letters, digits and ._:@+=-~")
    return "/" + stripped


def resolve(url: str | None, config: str | os.PathLike[str] | None, options: Mapping[str, object]) -> Resolved:
    """Resolve the URL, backend and options from arguments, environment and config file.

    Raises:
        ConfigurationError: a missing or unreadable config file.
        UnknownBackend: no installed backend serves the scheme.
        InvalidOption: a bad URL, an unknown option or a value of the wrong type.
    """
    file_options = read_config(Path(config) if config is not None else None)
    file_url = file_options.pop("url", None)
    chosen = url or os.environ.get("DISCOVERY_URL") or file_url or DEFAULT_URL
    if not isinstance(chosen, str):
        raise InvalidOption("url", chosen, "must be a string")
    shown_url = _redacted(chosen)
    try:
        parts = urllib.parse.urlsplit(chosen)
    except ValueError as exc:
        raise InvalidOption("url", shown_url, f"not a URL: {exc}") from None
    if not parts.scheme or "://" not in chosen:
        raise InvalidOption(
            "url", shown_url, "expected scheme://host[:port][,host...]/root, e.g. etcd://127.0.0.1:2379/services"
        )
    backend = load_backend(parts.scheme.lower())
    try:
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError as exc:
        raise InvalidOption("url", shown_url, f"bad query string: {exc}") from None
    merged: dict[str, object] = {**file_options, **query, **options}
    known = {**CORE_OPTIONS, **backend.options}
    values: dict[str, object] = {name: option.default for name, option in known.items()}
    for name, value in merged.items():
        if name not in known:
            raise InvalidOption(
                name, value, f"unknown option for backend {backend.name!r}; known: {', '.join(sorted(known))}"
            )
        values[name] = _convert(name, known[name], value)
    hosts = _parse_hosts(parts.netloc, backend.default_port, shown_url)
    if backend.default_port and not hosts:
        raise InvalidOption(
            "url", shown_url, f"names no host; expected e.g. {backend.name}://127.0.0.1:{backend.default_port}/services"
        )
    root = _root(parts.path, shown_url)
    target = Target(parts.scheme.lower(), hosts, root, {n: values[n] for n in backend.options})
    settings = Settings(**{n: values[n] for n in CORE_OPTIONS})  # type: ignore[arg-type]
    return Resolved(chosen, backend, target, _cap_meta(settings, backend, "meta_limit" in merged))


def _cap_meta(settings: Settings, backend: type[Backend], explicit: bool) -> Settings:
    """Hold ``meta_limit`` to what the backend can store: refuse a larger explicit one, lower the default."""
    cap = backend.max_value_bytes - VALUE_OVERHEAD
    if settings.meta_limit <= cap:
        return settings
    if explicit:
        raise InvalidOption(
            "meta_limit", settings.meta_limit, f"above {backend.name}'s largest value: at most {cap} bytes of meta"
        )
    return dataclasses.replace(settings, meta_limit=cap)
