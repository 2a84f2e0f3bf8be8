"""Configuration: where the URL and options come from, and in which order.

The URL is the first of: the ``url`` argument, ``$DISCOVERY_URL``, ``url`` in
the ``[registry]`` table of the config file, ``memory://``. The config file
is the ``config`` argument, else ``$DISCOVERY_CONFIG``, else ``./discovery.toml``
when it exists. Options, lowest to highest precedence: defaults, the config
file's ``[registry]`` table, the URL (its query string, and ``user:password@``
read as the backend's credentials), keyword arguments. An option neither the
core nor the backend declares is an error naming it. A secret option (see
:mod:`discovery._secrets`) can instead be read from a file or an environment
variable, at the same level: ``password_file=/run/secrets/etcd`` or
``password_env=ETCD_PASSWORD``; the URL kept for showing has its secrets masked.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from discovery._plugins import load_backend
from discovery._secrets import INDIRECTIONS, REDACTED, holds_key_material, is_secret, redact_url
from discovery._validation import DEFAULT_META_LIMIT, VALUE_OVERHEAD
from discovery.backend import Backend, Option, Target
from discovery.errors import ConfigurationError, InvalidOption

DEFAULT_URL = "memory://"

_log = logging.getLogger("discovery.config")
# Config files already warned about in this process: the command reads its file more than once.
_warned: set[Path] = set()

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
    """Everything :func:`discovery.connect` needs: the URL, the backend class, its target, the core settings.

    ``url`` is the URL as it may be shown, its secrets masked; the backend
    finds the credentials in the target's options.
    """

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
    _warn_if_exposed(path, table)
    return dict(table)


def _warn_if_exposed(path: Path, table: Mapping[str, object]) -> None:
    """Warn once per process when a config file holding a secret can be read by group or others."""
    held = sorted(name for name, value in table.items() if is_secret(name) and value)
    url = table.get("url")
    if isinstance(url, str) and redact_url(url) != url:
        held.append("a password in its url")
    if not held or os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
        real = path.resolve()
    except OSError:
        return
    if not mode & 0o044 or real in _warned:
        return
    _warned.add(real)
    _log.warning(
        "config file %r holds %s and is readable by group or others (mode %03o): chmod 600 it, "
        "or read the secret from a file or the environment (password_file=..., password_env=...)",
        str(path),
        ", ".join(held),
        mode & 0o777,
    )


def _read_secrets(layer: Mapping[str, object], known: Mapping[str, Option], source: str) -> dict[str, object]:
    """``layer`` with each ``<secret>_file`` / ``<secret>_env`` replaced by the secret option it reads.

    Raises:
        InvalidOption: the file or variable cannot be read or is empty, or the
            secret is given twice in the same place.
    """
    resolved = dict(layer)
    for name, where in layer.items():
        base, suffix = next(((name[: -len(s)], s) for s in INDIRECTIONS if name.endswith(s)), (name, ""))
        if not suffix or base not in known or not is_secret(base):
            continue
        if base in resolved:
            raise InvalidOption(name, where, f"{base!r} is given in the {source} already; give it one way only")
        if not isinstance(where, str) or not where:
            expected = "a file path" if suffix == "_file" else "an environment variable's name"
            raise InvalidOption(name, where, f"expected {expected}")
        resolved[base] = _read_secret_file(name, where) if suffix == "_file" else _read_secret_env(name, where)
        del resolved[name]
    return resolved


def _read_secret_file(option: str, path: str) -> str:
    """The secret held by the file at ``path``, without its trailing newline."""
    try:
        secret = Path(path).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InvalidOption(option, path, "the file is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidOption(option, path, f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    if not secret:
        raise InvalidOption(option, path, "the file is empty")
    return secret


def _read_secret_env(option: str, variable: str) -> str:
    """The secret held by the environment variable ``variable``."""
    secret = os.environ.get(variable)
    if not secret:
        raise InvalidOption(option, variable, "the environment variable is not set" if secret is None else "is empty")
    return secret


def _credentials(backend: type[Backend], userinfo: str, shown_url: str) -> dict[str, str]:
    """The options that ``user:password@`` in the URL stands for (percent-decoded).

    A backend declaring ``user`` and ``password`` options gets them (the
    password may come from elsewhere: ``etcd://svc@host?password_file=...``);
    one declaring ``auth_digest`` gets ``user:password``.

    Raises:
        InvalidOption: the backend takes no credentials, or they are incomplete.
    """
    user, colon, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    if not user:
        raise InvalidOption("url", shown_url, "names no user before ':' in user:password@")
    if {"user", "password"} <= backend.options.keys():
        return {"user": user, "password": password} if colon else {"user": user}
    if "auth_digest" in backend.options:
        if not colon or not password:
            raise InvalidOption("url", shown_url, "digest credentials are user:password@, both parts given")
        return {"auth_digest": f"{user}:{password}"}
    raise InvalidOption("url", shown_url, f"backend {backend.name!r} takes no credentials (user:password@)")


def _parse_hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
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
        # Not '@', which names may hold: in a URL's path it is taken for the end of a password holding a '/'.
        if not all(c.isalnum() or c in "._:+=-~" for c in segment):
            raise InvalidOption("url", url, f"root segment {segment!r}: allowed are letters, digits and ._:+=-~")
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
        raise InvalidOption("url", f"<{type(chosen).__name__}>", "must be a string")
    # Until the backend is known, no option's value is shown: any may be a mistyped password.
    shown_url = redact_url(chosen, known=(), strict=True)
    if not chosen.isprintable():
        # urlsplit would drop tabs and line breaks silently: the URL would not be the one given.
        raise InvalidOption("url", shown_url, "contains a control character; percent-encode it")
    try:
        parts = urllib.parse.urlsplit(chosen)
    except ValueError as exc:
        # Never the exception's text: it can quote the host part, credentials included.
        problem = "unbalanced '[' or ']' around an IPv6 address" if "IPv6" in str(exc) else "cannot be parsed"
        raise InvalidOption("url", shown_url, f"not a URL: {problem}") from None
    if not parts.scheme or "://" not in chosen:
        raise InvalidOption(
            "url", shown_url, "expected scheme://host[:port][,host...]/root, e.g. etcd://127.0.0.1:2379/services"
        )
    if "#" in chosen or "@" in parts.path:
        # Both mean a password holding an unencoded '/', '?' or '#': the host part ended inside it.
        raise InvalidOption(
            "url", shown_url, "'#' or '@' after the host part; in credentials write / ? # @ as %2F %3F %23 %40"
        )
    backend = load_backend(parts.scheme.lower())
    known = {**CORE_OPTIONS, **backend.options}
    shown_url = redact_url(chosen, known=_accepted_names(known), strict=True)
    try:
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise InvalidOption("url", shown_url, "bad query string: expected name=value pairs joined by '&'") from None
    userinfo, at, netloc = parts.netloc.rpartition("@")
    if at:
        for name, credential in _credentials(backend, userinfo, shown_url).items():
            if name in query or any(name + suffix in query for suffix in INDIRECTIONS):
                raise InvalidOption(name, credential, "given twice in the URL: in user:password@ and the query string")
            query[name] = credential
    merged: dict[str, object] = {}
    for layer, source in ((file_options, "config file"), (query, "URL"), (options, "keyword arguments")):
        merged.update(_read_secrets(layer, known, source))
    values: dict[str, object] = {name: option.default for name, option in known.items()}
    for name, value in merged.items():
        if holds_key_material(value):
            raise InvalidOption(name, REDACTED, "holds a private key; give the path of the key file", hidden=True)
        if name not in known:
            raise InvalidOption(name, value, _unknown(name, known, backend), hidden=True)
        values[name] = _convert(name, known[name], value)
    hosts = _parse_hosts(netloc, backend.default_port, shown_url)
    if backend.default_port and not hosts:
        raise InvalidOption(
            "url", shown_url, f"names no host; expected e.g. {backend.name}://127.0.0.1:{backend.default_port}/services"
        )
    root = _root(parts.path, shown_url)
    target = Target(parts.scheme.lower(), hosts, root, {n: values[n] for n in backend.options})
    settings = Settings(**{n: values[n] for n in CORE_OPTIONS})  # type: ignore[arg-type]
    return Resolved(redact_url(chosen), backend, target, _cap_meta(settings, backend, "meta_limit" in merged))


def _accepted_names(known: Mapping[str, Option]) -> set[str]:
    """The option names accepted: the declared options, and ``<secret>_file`` / ``<secret>_env``."""
    return {*known, *(f"{n}{s}" for n in known if is_secret(n) for s in INDIRECTIONS)}


def _unknown(name: str, known: Mapping[str, Option], backend: type[Backend]) -> str:
    """Why ``name`` is refused: unknown, the close matches, every name the backend accepts."""
    names = sorted(_accepted_names(known))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown option for backend {backend.name!r}{hint}; known: {', '.join(names)}"


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
