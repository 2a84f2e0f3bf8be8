"""Translation of kazoo's exceptions into discovery's one hierarchy, as a table of data.

Every call into kazoo goes through ``ERRORS.boundary`` (the core's
:class:`~discovery.translation.ErrorTranslation` over this table), which
turns any exception listed in :data:`TRANSLATIONS` into the matching
:class:`~discovery.errors.BackendError` subclass, chained with
``raise ... from exc`` and kept on ``.orig``. The lookup walks the raised
exception's MRO, so a subclass kazoo adds later still lands on its parent's
row; the test suite checks that every exception class ``kazoo.exceptions``
defines has a row. Errors the backend handles itself (``NoNodeError`` on a
read, ``NodeExistsError`` on a create...) are caught before they reach the
boundary; their rows only decide what an unexpected one turns into.
ZooKeeper answers ``NoAuth`` alike to a connection without credentials and
to an identity a znode's ACL does not grant: :func:`boundary`, for a
connection with credentials, makes it a
:class:`~discovery.errors.PermissionDenied` naming the key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from kazoo import exceptions as kz
from kazoo.handlers.threading import KazooTimeoutError

from discovery.errors import (
    AuthenticationFailed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    PermissionDenied,
    SessionExpired,
)
from discovery.translation import ErrorTranslation

__all__ = ["BACKEND", "ERRORS", "TRANSLATIONS", "boundary"]

BACKEND = "zookeeper"

TRANSLATIONS: Mapping[type[BaseException], type[BackendError]] = {
    # The connection: lost, closed, stopped, or the socket failed under a four-letter word.
    kz.ConnectionLoss: BackendUnavailable,
    kz.ConnectionDropped: BackendUnavailable,
    kz.ConnectionClosedError: BackendUnavailable,
    kz.ZookeeperStoppedError: BackendUnavailable,
    kz.SessionMovedError: BackendUnavailable,
    kz.NotReadOnlyCallError: BackendUnavailable,
    kz.ThrottledOpError: BackendUnavailable,
    kz.WriterNotClosedException: BackendUnavailable,
    OSError: BackendUnavailable,
    # The session behind an ephemeral write is gone.
    kz.SessionExpiredError: SessionExpired,
    kz.UnknownSessionError: SessionExpired,
    # Time.
    KazooTimeoutError: BackendTimeout,
    kz.OperationTimeoutError: BackendTimeout,
    kz.RequestTimeoutError: BackendTimeout,
    # Credentials and ACLs (NoAuth on a connection with credentials: PermissionDenied, see boundary()).
    kz.AuthFailedError: AuthenticationFailed,
    kz.NoAuthError: AuthenticationFailed,
    kz.SASLException: AuthenticationFailed,
    kz.SessionClosedRequireSaslError: AuthenticationFailed,
    # Everything else the server or the client library can report.
    kz.ZookeeperError: BackendError,
    kz.CancelledError: BackendError,
    kz.ConfigurationError: BackendError,
    kz.LockTimeout: BackendError,
    # kazoo raises its root class itself in a few places (e.g. "Too many retries").
    kz.KazooException: BackendError,
}
"""Client exception class -> discovery error class; looked up along the exception's MRO."""

ERRORS = ErrorTranslation(BACKEND, TRANSLATIONS)
"""The backend's boundary: an exception without a row (a bug, not a server failure) propagates untranslated."""


@contextmanager
def boundary(action: str, key: str, authenticated: bool) -> Iterator[None]:
    """``ERRORS.boundary(action)`` for an operation on ``key``: an identity the ACL refuses is PermissionDenied.

    Args:
        action: the operation, for the message (``"put buzz/api/h1"``).
        key: the key, or the prefix without its trailing ``/``, relative to the root.
        authenticated: whether the connection carries credentials; without,
            a refusal stays :class:`~discovery.errors.AuthenticationFailed`.

    Raises:
        PermissionDenied: with ``key``, on ``NoAuth`` for a connection with credentials.
        BackendError: any other translated error, as ``ERRORS.boundary`` raises it.
    """
    try:
        with ERRORS.boundary(action):
            yield
    except AuthenticationFailed as exc:
        if not authenticated or not isinstance(exc.orig, kz.NoAuthError):
            raise
        reason = f"{action}: the ACL does not grant this identity (NoAuth)"
        raise PermissionDenied(BACKEND, key, reason, exc.orig) from exc.orig
