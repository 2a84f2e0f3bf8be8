"""Error translation at a backend's boundary: one mechanism, each backend's table as data.

A backend calls its client library inside ``with translation.boundary(action):``
and every client exception that leaves the block becomes the
:class:`~discovery.errors.BackendError` subclass its table names, chained with
``raise ... from`` and kept on ``.orig``, so a caller only ever meets the one
error root. A backend supplies a table (client exception class -> discovery
error class; a lookup walks the raised exception's MRO, so a subclass the
client adds later lands on its parent's row), optionally a ``refine`` hook for
errors whose meaning is in their content rather than their class (an etcd
message, a TLS failure behind a connection error), and what an exception
without a row becomes: a plain ``BackendError``, or nothing (it propagates,
so a bug is not disguised as a server failure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from discovery.errors import BackendError, DiscoveryError

__all__ = ["ErrorTable", "ErrorTranslation"]

ErrorTable = Mapping[type[BaseException], type[BackendError]]
"""Client exception class -> the discovery error class it becomes."""


@dataclass(frozen=True)
class ErrorTranslation:
    """How one backend's client exceptions become discovery errors.

    Attributes:
        backend: the backend's name, carried by every error it builds.
        table: the rows, looked up along the raised exception's MRO.
        refine: called first with ``(exception, action)``; returns the error
            to raise when the exception's content decides it, else None.
        unlisted: what an exception without a row becomes; None lets it
            propagate untranslated.
    """

    backend: str
    table: ErrorTable
    refine: Callable[[BaseException, str], DiscoveryError | None] | None = None
    unlisted: type[BackendError] | None = None

    def lookup(self, kind: type[BaseException]) -> type[BackendError] | None:
        """The discovery error class for a client exception class, or None if the table has no row for it."""
        for base in kind.__mro__:
            found = self.table.get(base)
            if found is not None:
                return found
        return None

    def translate(self, exc: BaseException, action: str) -> DiscoveryError:
        """The discovery error for ``exc``, met while doing ``action``; a discovery error is returned as is.

        The error's message names the action, its ``orig`` and ``__cause__``
        are ``exc``. An exception without a row becomes ``unlisted``, or a
        plain :class:`~discovery.errors.BackendError` when that is None.
        """
        if isinstance(exc, DiscoveryError):
            return exc
        error = self.refine(exc, action) if self.refine is not None else None
        if error is None:
            kind = self.lookup(type(exc)) or self.unlisted or BackendError
            error = kind(self.backend, f"{action}: {str(exc) or type(exc).__name__}", exc)
        error.__cause__ = exc
        return error

    def handles(self, exc: BaseException) -> bool:
        """Whether :meth:`boundary` translates ``exc`` (discovery errors pass through untouched)."""
        if isinstance(exc, DiscoveryError):
            return False
        return self.unlisted is not None or self.lookup(type(exc)) is not None or self._refined(exc)

    def _refined(self, exc: BaseException) -> bool:
        return self.refine is not None and self.refine(exc, "") is not None

    @contextmanager
    def boundary(self, action: str) -> Iterator[None]:
        """Translate the client exceptions raised inside the block (``raise ... from``).

        Args:
            action: the operation, for the message (``"put buzz/api/host-1"``).

        Raises:
            BackendError: or the refined error, for every exception :meth:`handles`.
        """
        try:
            yield
        except Exception as exc:
            if not self.handles(exc):
                raise
            raise self.translate(exc, action) from exc
