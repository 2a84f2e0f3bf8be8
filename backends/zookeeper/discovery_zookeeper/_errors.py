"""Translation of kazoo's exceptions into discovery's one hierarchy, as a table of data.

Every call into kazoo goes through :func:`boundary`, which turns any exception
listed in :data:`TRANSLATIONS` into the matching
:class:`~discovery.errors.BackendError` subclass, chained with
``raise ... from exc`` and kept on ``.orig``. The lookup walks the raised
exception's MRO, so a subclass kazoo adds later still lands on its parent's
row; the test suite checks that every exception class ``kazoo.exceptions``
defines has a row. Errors the backend handles itself (``NoNodeError`` on a
read, ``NodeExistsError`` on a create...) are caught before they reach the
boundary; their rows only decide what an unexpected one turns into.
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
    SessionExpired,
)

__all__ = ["BACKEND", "TRANSLATIONS", "boundary", "lookup", "translate"]

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
    # Credentials and ACLs.
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

_TRANSLATABLE = tuple(TRANSLATIONS)


def lookup(kind: type[BaseException]) -> type[BackendError] | None:
    """The discovery error class for a client exception class, or None if the table has no row for it.

    Args:
        kind: the exception class, e.g. ``kazoo.exceptions.NoAuthError``.
    """
    for base in kind.__mro__:
        target = TRANSLATIONS.get(base)
        if target is not None:
            return target
    return None


def translate(exc: BaseException, what: str) -> BackendError:
    """Build the discovery error for a client exception, with ``orig`` set and the cause chained.

    Args:
        exc: the exception kazoo (or a socket) raised.
        what: the operation that failed, for the message.

    Returns:
        The translated error; :class:`~discovery.errors.BackendError` for an exception without a row.
    """
    target = lookup(type(exc)) or BackendError
    detail = str(exc) or type(exc).__name__
    error = target(BACKEND, f"{what}: {detail}", exc)
    error.__cause__ = exc
    return error


@contextmanager
def boundary(what: str) -> Iterator[None]:
    """Translate every client exception raised inside the block.

    Args:
        what: the operation, for the error message (``"put buzz/api/host-1"``).

    Raises:
        BackendError: or one of its subclasses, for any exception in :data:`TRANSLATIONS`.
    """
    try:
        yield
    except _TRANSLATABLE as exc:
        raise translate(exc, what) from exc
