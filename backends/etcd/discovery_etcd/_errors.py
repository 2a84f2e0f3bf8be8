"""Translation tables: every exception the etcd clients can raise, mapped to discovery's errors.

The tables are data, one entry per client exception class, so a test can
check that each covers every class ``requests.exceptions``,
``urllib3.exceptions`` and python-etcd's ``etcd`` module define; a lookup
walks the raised exception's MRO and takes the first class listed. The JSON
gateway of etcd v3 reports errors as gRPC status codes with an etcd message,
turned into :class:`GatewayError` by the v3 client and translated by message
first (``requested lease not found`` means the session expired), then by
code. :data:`V3_ERRORS` and :data:`V2_ERRORS` apply the tables through the
core's :class:`~discovery.translation.ErrorTranslation`. A refused
permission (``etcdserver: permission denied``, gRPC code 7) becomes
:class:`~discovery.errors.PermissionDenied`; the tables do not know the key,
so the backend's operation names it through :func:`keyed`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import etcd
import requests.exceptions as rex
import urllib3.exceptions as uex

from discovery.errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DiscoveryError,
    PermissionDenied,
    SessionExpired,
    Unsupported,
)
from discovery.translation import ErrorTranslation

__all__ = [
    "ETCD_ERRORS",
    "GATEWAY_CODES",
    "GATEWAY_MESSAGES",
    "GatewayError",
    "OTHER_ERRORS",
    "PERMISSION_DENIED",
    "REQUESTS_ERRORS",
    "URLLIB3_ERRORS",
    "V2_DISABLED",
    "V2_ERRORS",
    "V2_TABLE",
    "V3_ERRORS",
    "V3_TABLE",
    "keyed",
    "v2_disabled",
]

V2_DISABLED = "etcd v2 API disabled: start etcd with --enable-v2=true (etcd 3.4/3.5)"
"""What :class:`~discovery.errors.Unsupported` says when the server does not serve ``/v2/keys``."""

PERMISSION_DENIED = "etcdserver: permission denied"
"""etcd v3's message when the user's roles do not grant the key range; also in a refused watch's ``cancel_reason``."""


class GatewayError(Exception):
    """An error the etcd v3 JSON gateway answered with (a gRPC status and etcd's message).

    Attributes:
        code: the gRPC status code (``5`` not found, ``14`` unavailable...).
        message: etcd's message, e.g. ``etcdserver: requested lease not found``.
        http_status: the HTTP status of the answer (200 for an error inside a stream).
    """

    def __init__(self, code: int, message: str, http_status: int) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        super().__init__(f"{message} (grpc code {code}, http {http_status})")


REQUESTS_ERRORS: Mapping[type[BaseException], type[BackendError]] = {
    rex.RequestException: BackendError,
    rex.ConnectionError: BackendUnavailable,
    rex.ConnectTimeout: BackendUnavailable,
    rex.ProxyError: BackendUnavailable,
    rex.SSLError: AuthenticationFailed,
    rex.Timeout: BackendTimeout,
    rex.ReadTimeout: BackendTimeout,
    rex.ChunkedEncodingError: BackendUnavailable,
    rex.RetryError: BackendUnavailable,
    rex.ContentDecodingError: BackendError,
    rex.HTTPError: BackendError,
    rex.InvalidJSONError: BackendError,
    rex.JSONDecodeError: BackendError,
    rex.InvalidHeader: BackendError,
    rex.InvalidProxyURL: BackendError,
    rex.InvalidSchema: BackendError,
    rex.InvalidURL: BackendError,
    rex.MissingSchema: BackendError,
    rex.URLRequired: BackendError,
    rex.StreamConsumedError: BackendError,
    rex.TooManyRedirects: BackendError,
    rex.UnrewindableBodyError: BackendError,
}
"""requests, used by the v3 client and the v2 watch."""

URLLIB3_ERRORS: Mapping[type[BaseException], type[BackendError]] = {
    uex.HTTPError: BackendError,
    uex.PoolError: BackendError,
    uex.RequestError: BackendError,
    uex.EmptyPoolError: BackendUnavailable,
    uex.FullPoolError: BackendError,
    uex.ClosedPoolError: BackendUnavailable,
    uex.HostChangedError: BackendError,
    uex.MaxRetryError: BackendUnavailable,
    uex.SSLError: AuthenticationFailed,
    uex.ProxyError: BackendUnavailable,
    uex.DecodeError: BackendError,
    uex.ProtocolError: BackendUnavailable,
    uex.TimeoutStateError: BackendError,
    uex.TimeoutError: BackendTimeout,
    uex.ReadTimeoutError: BackendTimeout,
    uex.ConnectTimeoutError: BackendUnavailable,
    uex.NewConnectionError: BackendUnavailable,
    uex.NameResolutionError: BackendUnavailable,
    uex.LocationValueError: BackendError,
    uex.LocationParseError: BackendError,
    uex.URLSchemeUnknown: BackendError,
    uex.ProxySchemeUnknown: BackendError,
    uex.ResponseError: BackendError,
    uex.HeaderParsingError: BackendError,
    uex.UnrewindableBodyError: BackendError,
    uex.IncompleteRead: BackendUnavailable,
    uex.InvalidChunkLength: BackendUnavailable,
    uex.InvalidHeader: BackendError,
    uex.BodyNotHttplibCompatible: BackendError,
    uex.ResponseNotChunked: BackendError,
}
"""urllib3, under requests and python-etcd; met when reading a streamed body directly."""

ETCD_ERRORS: Mapping[type[BaseException], type[BackendError]] = {
    etcd.EtcdException: BackendError,
    etcd.EtcdValueError: BackendError,
    etcd.EtcdCompareFailed: BackendError,
    etcd.EtcdDirNotEmpty: BackendError,
    etcd.EtcdKeyError: BackendError,
    etcd.EtcdKeyNotFound: BackendError,
    etcd.EtcdNotFile: BackendError,
    etcd.EtcdNotDir: BackendError,
    etcd.EtcdAlreadyExist: BackendError,
    etcd.EtcdRootReadOnly: BackendError,
    etcd.EtcdEventIndexCleared: BackendError,
    etcd.EtcdLockExpired: BackendError,
    etcd.EtcdClusterIdChanged: BackendUnavailable,
    etcd.EtcdConnectionFailed: BackendUnavailable,
    etcd.EtcdWatchTimedOut: BackendTimeout,
    etcd.EtcdWatcherCleared: BackendUnavailable,
    etcd.EtcdLeaderElectionInProgress: BackendUnavailable,
    # A 401: a wrong password or a missing grant, which the v2 backend tells apart (PermissionDenied).
    etcd.EtcdInsufficientPermissions: AuthenticationFailed,
}
"""python-etcd, the v2 client. Key-level errors the backend expects (not found,
already exists, compare failed, index cleared) are handled before they reach
this table; what arrives here is unexpected and becomes a plain BackendError."""

OTHER_ERRORS: Mapping[type[BaseException], type[BackendError]] = {
    OSError: BackendUnavailable,
    ValueError: BackendError,
    GatewayError: BackendError,
}
"""Socket errors that escape the clients, undecodable answers, and gateway errors no finer entry names."""

GATEWAY_CODES: Mapping[int, type[BackendError]] = {
    1: BackendUnavailable,  # CANCELLED: the server went away mid-call
    2: BackendError,  # UNKNOWN
    3: BackendError,  # INVALID_ARGUMENT
    4: BackendTimeout,  # DEADLINE_EXCEEDED
    5: BackendError,  # NOT_FOUND
    6: BackendError,  # ALREADY_EXISTS
    7: PermissionDenied,  # PERMISSION_DENIED: the user's roles do not grant the key range
    8: BackendUnavailable,  # RESOURCE_EXHAUSTED: too many requests
    9: BackendError,  # FAILED_PRECONDITION
    10: BackendUnavailable,  # ABORTED
    11: BackendError,  # OUT_OF_RANGE: compacted or future revision
    12: BackendError,  # UNIMPLEMENTED
    13: BackendError,  # INTERNAL
    14: BackendUnavailable,  # UNAVAILABLE: no leader, member stopping, request timed out
    15: BackendError,  # DATA_LOSS
    16: AuthenticationFailed,  # UNAUTHENTICATED
}
"""gRPC status codes the v3 gateway answers with."""

GATEWAY_MESSAGES: Mapping[str, type[BackendError]] = {
    "etcdserver: requested lease not found": SessionExpired,
    "etcdserver: authentication failed": AuthenticationFailed,
    "etcdserver: user name is empty": AuthenticationFailed,
    "etcdserver: invalid auth token": AuthenticationFailed,
    PERMISSION_DENIED: PermissionDenied,
    "etcdserver: no leader": BackendUnavailable,
    "etcdserver: request timed out": BackendTimeout,
}
"""etcd messages whose meaning is finer than their gRPC code (auth errors come as INVALID_ARGUMENT)."""

V3_TABLE: Mapping[type[BaseException], type[BackendError]] = {**OTHER_ERRORS, **REQUESTS_ERRORS, **URLLIB3_ERRORS}
"""What the v3 backend (requests over the JSON gateway) can meet."""

V2_TABLE: Mapping[type[BaseException], type[BackendError]] = {
    **OTHER_ERRORS,
    **REQUESTS_ERRORS,
    **URLLIB3_ERRORS,
    **ETCD_ERRORS,
}
"""What the v2 backend (python-etcd, and requests for the watch) can meet."""


def _gateway_kind(exc: GatewayError) -> type[BackendError]:
    for fragment, kind in GATEWAY_MESSAGES.items():
        if fragment in exc.message:
            return kind
    return GATEWAY_CODES.get(exc.code, BackendError)


def _refine_v3(exc: BaseException, action: str) -> DiscoveryError | None:
    """A gateway error, translated by etcd's message first, then by its gRPC code.

    A refused permission names no key here: :func:`keyed` adds it.
    """
    if isinstance(exc, GatewayError):
        kind = _gateway_kind(exc)
        if issubclass(kind, PermissionDenied):
            return PermissionDenied("etcd", "", f"{action}: {exc}", exc)
        return kind("etcd", f"{action}: {exc}", exc)
    return None


@contextmanager
def keyed(errors: ErrorTranslation, action: str, key: str) -> Iterator[None]:
    """``errors.boundary(action)`` for an operation on ``key``: a refused permission names the key.

    Args:
        errors: the backend's translation.
        action: the operation, for the message (``"put"``).
        key: the key, or the prefix without its trailing ``/``, relative to
            the registry's root, as :attr:`PermissionDenied.key` reports it.

    Raises:
        PermissionDenied: with ``key``, when the server refused the permission.
        BackendError: any other translated error, as ``errors.boundary`` raises it.
    """
    try:
        with errors.boundary(action):
            yield
    except PermissionDenied as exc:
        if exc.key:
            raise
        raise PermissionDenied(exc.backend, key, f"{action} {key!r}: {exc.orig or exc}", exc.orig) from exc.orig


def v2_disabled(exc: BaseException) -> bool:
    """Whether an exception says the server does not serve the v2 API.

    etcd without v2 answers ``/v2/keys`` with a plain-text ``404 page not
    found``, which python-etcd turns into an ``EtcdException`` whose payload
    has no etcd ``errorCode``.
    """
    payload: Any = getattr(exc, "payload", None)
    if not isinstance(exc, etcd.EtcdException) or not isinstance(payload, dict) or "errorCode" in payload:
        return False
    return payload.get("status") == 404 or "404 page not found" in str(payload.get("cause", ""))


def _refine_v2(exc: BaseException, action: str) -> DiscoveryError | None:
    """A server without the v2 API, or a refused TLS handshake behind a connection failure."""
    if v2_disabled(exc):
        return Unsupported(f"the v2 API ({V2_DISABLED})", "etcd2")
    if isinstance(exc, etcd.EtcdConnectionFailed) and _tls_refused(exc):
        return AuthenticationFailed("etcd2", f"{action}: {exc}", exc)
    return None


def _tls_refused(exc: BaseException) -> bool:
    """Whether a TLS handshake failure lies behind ``exc``.

    python-etcd wraps every failed request in EtcdConnectionFailed, keeping
    urllib3's error as ``cause`` (a MaxRetryError keeps the SSL error as
    ``reason``): a refused client certificate or an unverifiable server is
    then an authentication failure, as it is on the v3 API.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | uex.SSLError):
            return True
        pending += [getattr(current, "cause", None), getattr(current, "reason", None)]
        pending += [current.__cause__, current.__context__]
    return False


V3_ERRORS = ErrorTranslation("etcd", V3_TABLE, refine=_refine_v3, unlisted=BackendError)
"""The v3 backend's boundary: gateway errors by message and code, anything unexpected a plain BackendError."""

V2_ERRORS = ErrorTranslation("etcd2", V2_TABLE, refine=_refine_v2, unlisted=BackendError)
"""The v2 backend's boundary: a server without v2 is Unsupported, anything unexpected a plain BackendError."""
