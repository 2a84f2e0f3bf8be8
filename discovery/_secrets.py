"""Secrets: which options hold one, and how a URL or an option set is shown without them.

A secret is the value of an option named ``password`` or ``auth_digest``, or
of any option whose name contains ``password``, ``token`` or ``secret``, and
the password part of a URL's ``user:password@``. Nothing discovery shows —
``repr()``, ``Registry.url``, exception messages, log records, the command's
output — holds one: each is replaced by :data:`REDACTED`. The companion
options ``<secret>_file`` and ``<secret>_env`` name where a secret is read
from (a path, a variable name); they are not secrets themselves. Paths of
TLS files (``key``, ``keyfile``) are shown: discovery only passes the path
on, and refuses a value that holds key material instead of a path.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection, Mapping

__all__ = [
    "INDIRECTIONS",
    "REDACTED",
    "holds_key_material",
    "is_secret",
    "mask_passwords_in_text",
    "redact_options",
    "redact_url",
]

REDACTED = "***"
"""What a secret is shown as."""

INDIRECTIONS = ("_file", "_env")
"""Suffixes of the options that name where a secret option's value is read from."""

_SECRET_NAMES = frozenset({"password", "auth_digest"})
_SECRET_WORDS = ("password", "token", "secret")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.~%+-]+")
_PASSWORD_IN_URL = re.compile(r"(://[^/?#@\s'\"]*:)[^\s'\"]*@")
_HOSTS = re.compile(r"[A-Za-z0-9.:,\[\]_-]*")


def is_secret(name: str) -> bool:
    """Whether the option ``name`` holds a secret (``password_file`` and ``password_env`` do not: they name one)."""
    lowered = name.lower()
    if lowered.endswith(INDIRECTIONS):
        return False
    return lowered in _SECRET_NAMES or any(word in lowered for word in _SECRET_WORDS)


def holds_key_material(value: object) -> bool:
    """Whether ``value`` looks like a PEM private key rather than the path of one."""
    return isinstance(value, str) and "PRIVATE KEY" in value


def mask_passwords_in_text(text: str) -> str:
    """``text`` with the password of every URL in it masked: a URL given where another value was expected."""
    return _PASSWORD_IN_URL.sub(rf"\1{REDACTED}@", text)


def redact_options(options: Mapping[str, object]) -> dict[str, object]:
    """``options`` with the value of every secret option replaced by :data:`REDACTED`."""
    return {name: REDACTED if is_secret(name) and value else value for name, value in options.items()}


def redact_url(url: str, known: Collection[str] | None = None, *, strict: bool = False) -> str:
    """``url`` as it may be shown: ``etcd://user:***@host:2379/root?user=svc&password=***``.

    Robust to malformed input: when a password holds an unencoded ``/``,
    ``?`` or ``#``, where its parts end is unknown, and only the hosts are
    shown (``etcd://***@host/***``).

    Args:
        url: the URL.
        known: when given, the only option names whose values may be shown
            (secret ones aside): an unknown option may be a mistyped password.
        strict: for a URL being refused: an ``@`` beyond the host part (in a
            query value, ``?user=svc@corp``, or after a password's unencoded
            ``?``: the two cannot be told apart) hides all but the scheme.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _redact_query(url, known) if "=" in url else url
    if strict and "@" in re.sub(r"^[^/?#]*", "", rest):
        return f"{scheme}://{REDACTED}"
    at = _credentials_end(rest)
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if any(c in userinfo for c in "/?#"):
            # A password with an unencoded reserved character: any part may hold a piece of it.
            hosts, tail = re.match(r"([^/?#]*)(.*)", rest, re.S).groups()  # type: ignore[union-attr]
            shown_hosts = hosts if _HOSTS.fullmatch(hosts) else REDACTED
            return f"{scheme}://{REDACTED}@{shown_hosts}{'/' + REDACTED if tail else ''}"
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{colon}{REDACTED if colon else ''}@{rest}"
    head, question, query = rest.partition("?")
    return f"{scheme}://{head}{question}{_redact_query(query, known)}"


def _credentials_end(rest: str) -> int:
    """The index in ``rest`` (the URL after ``://``) of the ``@`` that ends the credentials; -1 for none.

    That is the last ``@`` outside a query value: ``?user=svc@corp`` holds no
    credentials, ``u:pa?ss@host`` does (a password with an unencoded ``?``).
    """
    question = rest.find("?")
    candidates = [i for i, c in enumerate(rest) if c == "@"]
    if question >= 0:
        query_start = question + 1
        in_value: set[int] = set()
        offset = query_start
        for chunk in rest[query_start:].split("&"):
            name, equals, _ = chunk.partition("=")
            if equals and "@" not in name and "#" not in name and _QUERY_NAME.fullmatch(name):
                value_start = offset + len(name) + 1
                in_value.update(range(value_start, offset + len(chunk)))
            offset += len(chunk) + 1
        candidates = [i for i in candidates if i not in in_value]
    return candidates[-1] if candidates else -1


def _redact_query(query: str, known: Collection[str] | None) -> str:
    """A query string with the values of secret (or unknown) options masked, everything else as given."""
    parts = []
    for chunk in query.split("&"):
        name, equals, value = chunk.partition("=")
        decoded = urllib.parse.unquote_plus(name)
        if not equals and chunk:
            # No name=value pair: the tail of a value holding an unencoded '&', perhaps a password's.
            chunk = REDACTED
        elif value and (is_secret(decoded) or (known is not None and decoded not in known)):
            chunk = f"{name}={REDACTED}"
        parts.append(chunk)
    return "&".join(parts)
