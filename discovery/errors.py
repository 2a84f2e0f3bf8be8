"""The one exception hierarchy of discovery.

Every error a caller can meet is a :class:`DiscoveryError`; backends translate
their client library's exceptions at the boundary and chain the original
(``raise BackendUnavailable(...) from exc``, kept on ``.orig`` as well), so a
caller never has to catch a ``kazoo`` or ``etcd`` exception. Errors carry
fields, not only text::

    DiscoveryError
    ├── ConfigurationError
    │   ├── UnknownBackend          (scheme, installed, hint)
    │   ├── InvalidOption           (option, value, reason)
    │   └── CapabilityMissing       (backend, missing)
    ├── InvalidInput                (field, value, reason)  also a ValueError
    │   ├── InvalidName
    │   ├── InvalidMeta
    │   ├── InvalidValue
    │   └── NameConflict            (key, conflict)
    ├── AlreadyRegistered           (service, instance_id)
    ├── NotFound                    (service, instance_id)
    │   └── NoInstances             (service, reason)
    ├── Unsupported                 (operation, backend)
    ├── RegistryClosed
    ├── WatchBroken                 (prefix, reason)
    └── BackendError                (backend, orig)
        ├── BackendUnavailable
        ├── BackendTimeout
        ├── AuthenticationFailed
        │   └── PermissionDenied    (key)
        └── SessionExpired
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import ClassVar

from discovery._secrets import REDACTED, is_secret, mask_passwords_in_text

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 3
_SHOWN.maxstring = 60
_SHOWN.maxother = 60
_SHOWN.maxlong = 40


def shown(value: object) -> str:
    """A short, safe ``repr`` of a refused value for an error message.

    Never raises and never recurses without bound: values nested 100,000 deep,
    integers of thousands of digits and objects whose ``repr`` fails are
    described instead of printed.
    """
    try:
        text = _SHOWN.repr(value)
    except Exception:
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


class DiscoveryError(Exception):
    """Root of every error raised by discovery and its backends."""


class ConfigurationError(DiscoveryError):
    """The registry could not be configured: bad URL, option or backend."""


class UnknownBackend(ConfigurationError):
    """No installed backend serves the URL scheme.

    Attributes:
        scheme: the scheme asked for.
        installed: the schemes of the installed backends.
        hint: the distribution that provides the backend, when known.
    """

    def __init__(self, scheme: str, installed: Iterable[str], hint: str | None = None) -> None:
        self.scheme = scheme
        self.installed = tuple(sorted(installed))
        self.hint = hint
        message = f"unknown backend scheme {scheme!r}; installed: {', '.join(self.installed) or 'none'}"
        if hint:
            message += f"; install {hint!r} to use it"
        super().__init__(message)


_OPTION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class InvalidOption(ConfigurationError):
    """An option is unknown or its value cannot be used.

    The value of a secret option (``password``, ``auth_digest``, any name
    holding ``password``, ``token`` or ``secret``) is never kept or shown:
    it is ``***`` in the message and in :attr:`value`.

    Args:
        option: the option's name.
        value: the value given.
        reason: why it was refused.
        hidden: hide the value although the name is not a secret's (an
            unknown option's value, which may be a mistyped password's).

    Attributes:
        option: the option's name.
        value: the value given, or ``***``.
        reason: why it was refused.
    """

    def __init__(self, option: str, value: object, reason: str, *, hidden: bool = False) -> None:
        self.option = option
        self.value = REDACTED if hidden or is_secret(option) else value
        self.reason = reason
        shown_value = REDACTED if self.value is REDACTED else mask_passwords_in_text(shown(value))
        if "@" in shown_value:
            # Most likely a piece of a URL whose password held an unencoded "?" or "#".
            shown_value = REDACTED
        # A "name" that is no identifier is a piece of a mangled URL (a password with an
        # unencoded "?" puts its tail in the query string): shown, it could be a secret's.
        shown_name = repr(option) if _OPTION_NAME.fullmatch(option) else REDACTED
        super().__init__(f"option {shown_name}={shown_value}: {reason}")


class CapabilityMissing(ConfigurationError):
    """The backend lacks a capability the caller required.

    Attributes:
        backend: the backend's name.
        missing: the names of the missing capabilities.
    """

    def __init__(self, backend: str, missing: Iterable[str]) -> None:
        self.backend = backend
        self.missing = tuple(sorted(missing))
        super().__init__(f"backend {backend!r} lacks required capabilities: {', '.join(self.missing)}")


class InvalidInput(DiscoveryError, ValueError):
    """An argument was refused before anything was written.

    Attributes:
        field: the argument's name (``service``, ``instance_id``, ``meta``, ``ttl``...).
        value: the value given (shortened when long).
        reason: why it was refused.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field} {shown(value)}: {reason}")


class InvalidName(InvalidInput):
    """A service path or instance id breaks the naming rules."""


class InvalidMeta(InvalidInput):
    """Instance metadata is not a JSON object of bounded size."""


class InvalidValue(InvalidInput):
    """A scalar argument (ttl, port, address, min_instances...) is out of range."""


class NameConflict(InvalidInput):
    """A name would be both an instance id and a service path segment under the same parent.

    Keys form a tree whose leaves are instances and definitions: after
    ``shop/api/x`` exists, ``api`` is a sub-service of ``shop`` and cannot
    also be an instance id of ``shop``, and the other way round. Raised by
    every backend alike, from the write itself, so nothing is changed.

    Attributes:
        key: the key that was to be written, relative to the root.
        conflict: the existing key in its way (below it, or above it).
    """

    def __init__(self, key: str, conflict: str) -> None:
        self.key = key
        self.conflict = conflict
        service, _, name = key.rpartition("/")
        if conflict.startswith(key + "/"):
            field, reason = "instance_id", f"{name!r} is already a sub-service of {service!r} (key {conflict!r})"
        else:
            field, reason = "service", f"{service!r} lies below the instance {conflict!r}"
        super().__init__(field, key, f"name conflict: {reason}; a name is either an instance id or a service")


class AlreadyRegistered(DiscoveryError):
    """The instance id is held by another live registrant.

    Attributes:
        service: the service path.
        instance_id: the instance id.
    """

    def __init__(self, service: str, instance_id: str) -> None:
        self.service = service
        self.instance_id = instance_id
        super().__init__(f"instance {instance_id!r} of {service!r} is held by another live registrant")


class NotFound(DiscoveryError):
    """The service definition or instance does not exist.

    Attributes:
        service: the service path.
        instance_id: the instance id, or None when a service definition was meant.
    """

    def __init__(self, service: str, instance_id: str | None = None) -> None:
        self.service = service
        self.instance_id = instance_id
        what = f"instance {instance_id!r} of {service!r}" if instance_id else f"service definition {service!r}"
        super().__init__(f"{what} not found")


class NoInstances(NotFound):
    """A provider has no instance of the service to pick.

    Attributes:
        service: the service path.
        instance_id: always None.
        reason: why, one of :attr:`REASONS`: ``no-instances`` (the cache holds
            none), ``filtered-out`` (the provider's filter rejected them all)
            or ``all-down`` (every one left sits out a cool-down after errors).
    """

    REASONS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "no-instances": "the cache holds no instance of it",
            "filtered-out": "the filter rejected every instance",
            "all-down": "every instance the filter accepts is down after reported errors",
        }
    )

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.instance_id = None
        self.reason = reason
        DiscoveryError.__init__(self, f"no instance of {service!r} to pick: {self.REASONS.get(reason, reason)}")


class Unsupported(DiscoveryError):
    """The backend cannot perform this operation (see its capabilities).

    Attributes:
        operation: what was asked.
        backend: the backend's name.
    """

    def __init__(self, operation: str, backend: str) -> None:
        self.operation = operation
        self.backend = backend
        super().__init__(f"backend {backend!r} does not support {operation}")


class RegistryClosed(DiscoveryError):
    """The registry (or watch, or registration) was used after close()."""


class WatchBroken(DiscoveryError):
    """A watch stream broke and could not be resumed; raised to the consumer.

    Attributes:
        prefix: the watched prefix.
        reason: what broke.
    """

    def __init__(self, prefix: str, reason: str) -> None:
        self.prefix = prefix
        self.reason = reason
        super().__init__(f"watch on {prefix!r} broke: {reason}")


class BackendError(DiscoveryError):
    """The backend's server or client library failed.

    Attributes:
        backend: the backend's name.
        orig: the original client exception, also chained as ``__cause__``.
    """

    def __init__(self, backend: str, message: str, orig: BaseException | None = None) -> None:
        self.backend = backend
        self.orig = orig
        super().__init__(f"{backend}: {message}")


class BackendUnavailable(BackendError):
    """The server cannot be reached or the connection was lost."""


class BackendTimeout(BackendError):
    """The server did not answer in time."""


class AuthenticationFailed(BackendError):
    """The server refused the credentials or certificates."""


class PermissionDenied(AuthenticationFailed):
    """The server knows who the caller is but does not let it do this here: nothing was changed.

    Attributes:
        key: the key or prefix (below the registry's root) the refused
            operation was for; ``""`` when the server did not say and the
            operation names none.
    """

    def __init__(self, backend: str, key: str, message: str, orig: BaseException | None = None) -> None:
        self.key = key
        super().__init__(backend, message, orig)


class SessionExpired(BackendError):
    """The lease or session a write was bound to no longer exists on the server.

    The core reacts by opening a new session and writing its registrations
    again; callers of the public API rarely see it.
    """
