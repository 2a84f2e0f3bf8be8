"""Exit codes and error reporting of the ``discovery`` command: one line on stderr, a documented code.

Every failure a user can cause ends the same way: ``error: <what went wrong>``
on stderr (details, such as a server's log tail, on the following lines) and
an exit code from :data:`EXIT_CODES`, a table kept as data so that the mapping,
the ``--help`` epilog and the tests cannot drift apart. :class:`ErrorHandlingGroup`
applies it to click's own usage errors as well as to every
:class:`~discovery.DiscoveryError` a command lets through; only a bug still
shows a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import click

from discovery.errors import (
    AlreadyRegistered,
    BackendError,
    CapabilityMissing,
    ConfigurationError,
    DiscoveryError,
    InvalidInput,
    InvalidOption,
    NameConflict,
    NoInstances,
    NotFound,
    UnknownBackend,
    WatchBroken,
)

OK = 0
FAILURE = 1
USAGE = 2
UNKNOWN_BACKEND = 3
UNREACHABLE = 4
NOT_FOUND = 5
CONFLICT = 6
INTERRUPTED = 130


@dataclass(frozen=True)
class ExitCode:
    """One documented exit code.

    Attributes:
        code: the process exit status.
        meaning: what it tells the caller, for ``--help``.
        errors: the exceptions that end with this code, most specific first.
    """

    code: int
    meaning: str
    errors: tuple[type[BaseException], ...] = ()


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(OK, "success; also register, watch and tree --watch stopped by Ctrl-C or SIGTERM"),
    ExitCode(FAILURE, "any other error (a local server that does not start, an I/O error...)"),
    ExitCode(USAGE, "usage error or bad input", (click.UsageError, InvalidInput, InvalidOption, ConfigurationError)),
    ExitCode(UNKNOWN_BACKEND, "unknown backend or missing capability", (UnknownBackend, CapabilityMissing)),
    ExitCode(UNREACHABLE, "server unreachable, or no local server of the kind asked for", (BackendError, WatchBroken)),
    ExitCode(
        NOT_FOUND,
        "not found (instance, service definition, local servers, no instance to pick)",
        (NoInstances, NotFound),
    ),
    ExitCode(
        CONFLICT,
        "conflict (the id is held by another live registrant, or the name is a service or instance already)",
        (AlreadyRegistered, NameConflict),
    ),
    ExitCode(INTERRUPTED, "interrupted (Ctrl-C) during a short command"),
)
"""Every exit code of the command, in order."""

# Subclasses before their bases: UnknownBackend is a ConfigurationError, yet exits 3, not 2.
_LOOKUP: tuple[tuple[type[BaseException], int], ...] = tuple(
    sorted(
        ((error, entry.code) for entry in EXIT_CODES for error in entry.errors),
        key=lambda pair: -len(pair[0].__mro__),
    )
)


def exit_code_for(error: BaseException) -> int:
    """The exit code the command ends with after ``error``.

    Args:
        error: the exception that ended the command.

    Returns:
        The code of the most specific matching entry of :data:`EXIT_CODES`, else 1.
    """
    for kind, code in _LOOKUP:
        if isinstance(error, kind):
            return code
    return FAILURE


def exit_codes_epilog() -> str:
    """The exit-code table for a ``--help`` epilog, generated from :data:`EXIT_CODES`.

    Returns:
        A block click prints verbatim (it starts with click's ``\\b`` no-rewrap marker).
    """
    lines = ["\b", "Exit codes:"]
    for entry in EXIT_CODES:
        names = ", ".join(error.__name__ for error in entry.errors if error is not click.UsageError)
        lines.append(f"  {entry.code:<4}{entry.meaning}{f' ({names})' if names else ''}")
    return "\n".join(lines)


class CliError(click.ClickException):
    """An error the command reports as ``error: <message>`` (plus details) with a chosen exit code.

    Attributes:
        exit_code: the process exit status.
        details: extra lines printed after the error line (a log tail...).
    """

    exit_code: int  # type: ignore[misc]  # click declares a ClassVar; each error here picks its own code

    def __init__(self, message: str, exit_code: int = FAILURE, details: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error line and the details to stderr (or ``file``)."""
        click.echo(f"error: {self.message}", file=file, err=file is None)
        if self.details:
            click.echo(self.details.rstrip("\n"), file=file, err=file is None)


def translate(error: BaseException) -> CliError:
    """The :class:`CliError` that reports ``error``: its first line as the message, the rest as details.

    Args:
        error: a :class:`~discovery.DiscoveryError`, a click usage error or an ``OSError``.

    Returns:
        The error to raise, with the exit code from :func:`exit_code_for`.
    """
    if isinstance(error, click.UsageError):
        message = error.format_message()
        if error.ctx is not None:
            message += f" (see '{error.ctx.command_path} --help')"
        return CliError(message, USAGE)
    if isinstance(error, OSError) and error.filename is not None:
        return CliError(f"{error.strerror or error}: {error.filename}", FAILURE)
    text = str(error) or type(error).__name__
    message, _, details = text.partition("\n")
    return CliError(message, exit_code_for(error), details)


class ErrorHandlingGroup(click.Group):
    """A click group that turns user errors into one ``error:`` line and a documented exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options; a usage error becomes a :class:`CliError`."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise translate(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the sub-command; known errors become a :class:`CliError`, Ctrl-C exits 130."""
        try:
            return super().invoke(ctx)
        except CliError:
            raise
        except click.UsageError as exc:
            raise translate(exc) from exc
        except KeyboardInterrupt as exc:
            raise CliError("interrupted", INTERRUPTED) from exc
        except DiscoveryError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise translate(exc) from exc


def format_choices(values: Sequence[str]) -> str:
    """``a, b or c``, for messages that list what would have been accepted."""
    if len(values) <= 1:
        return "".join(values)
    return f"{', '.join(values[:-1])} or {values[-1]}"
