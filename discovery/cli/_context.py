"""What every ``discovery`` command shares: the group's options, the consoles, and which registry to use.

The URL is chosen exactly as :func:`discovery.connect` chooses it (``--url``,
then ``$DISCOVERY_URL``, then ``url`` in the config file's ``[registry]``
table: ``--config``, ``$DISCOVERY_CONFIG`` or ``./discovery.toml``), with one
step added before the ``memory://`` default: the local servers that
``discovery servers up`` keeps running, etcd first, then ZooKeeper, or the one
``--backend`` names. Every command that talks to a registry says on stderr,
in one dim line, which backend and URL it uses and why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

import discovery
from discovery._config import config_path, read_config
from discovery.cli._errors import UNREACHABLE, USAGE, CliError, format_choices
from discovery.cli._state import SCHEMES, running
from discovery.errors import ConfigurationError

PREFERRED_SCHEMES = ("etcd", "etcd2", "zookeeper")
"""The local servers' schemes, in the order a command picks them when ``--backend`` is not given."""

_NOISY_LOGGERS = ("kazoo", "urllib3", "etcd", "etcd3gw", "stevedore")


@dataclass(frozen=True)
class Choice:
    """The registry a command will connect to.

    Attributes:
        url: the URL to pass to :func:`discovery.connect` (None: let it resolve).
        source: where the URL came from, for the ``using ...`` line.
    """

    url: str | None
    source: str


@dataclass
class CliState:
    """The group's options, shared by every command (``ctx.obj``).

    Attributes:
        url: ``--url``.
        config: ``--config``.
        backend: ``--backend``: which running local server to use.
        require: ``--require``: capabilities the backend must have.
        state_dir: where ``servers up`` keeps its state.
        out: the console for results (stdout).
        err: the console for notes and warnings (stderr).
    """

    url: str | None
    config: Path | None
    backend: str | None
    require: tuple[str, ...]
    state_dir: Path
    out: Console
    err: Console

    def note(self, message: str) -> None:
        """Print one dim line on stderr."""
        self.err.print(Text(message, style="dim"), soft_wrap=True)

    def warn(self, message: str) -> None:
        """Print one warning line on stderr."""
        self.err.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)

    def choose(self) -> Choice:
        """Decide which registry to use, without connecting.

        Returns:
            The URL (or None to let :func:`discovery.connect` resolve it) and its source.

        Raises:
            CliError: ``--backend`` names no running local server, or comes with ``--url``.
        """
        if self.url:
            if self.backend:
                raise CliError("--backend picks among the running local servers; it cannot go with --url", USAGE)
            return Choice(self.url, "--url")
        if self.backend is None:
            if os.environ.get("DISCOVERY_URL"):
                return Choice(None, "$DISCOVERY_URL")
            config_file = _config_with_url(self.config)
            if config_file is not None:
                return Choice(None, f"config file {config_file}")
        state = running(self.state_dir)
        if state is not None:
            schemes = [scheme for scheme in PREFERRED_SCHEMES if scheme in state.urls]
            scheme = self.backend or schemes[0]
            if scheme not in state.urls:
                raise CliError(
                    f"no local {scheme} server is running (running: {format_choices(schemes)}); "
                    f"start it with 'discovery servers up --{_kind_of(scheme)}'",
                    UNREACHABLE,
                )
            return Choice(state.urls[scheme], f"local servers, {self.state_dir}")
        if self.backend:
            raise CliError(
                f"no local servers are running (state dir {self.state_dir}); start them with 'discovery servers up'",
                UNREACHABLE,
            )
        return Choice(None, "default")

    def connect(self) -> discovery.Registry:
        """Connect to the chosen registry and say which one on stderr.

        Returns:
            The connected registry; the caller closes it.

        Raises:
            CliError: see :meth:`choose`.
            DiscoveryError: :func:`discovery.connect` failed (bad URL, option, config file, capability...).
        """
        choice = self.choose()
        registry = discovery.connect(choice.url, config=self.config, require=self.require)
        self.note(f"using {registry.backend.name} at {registry.url} ({choice.source})")
        if registry.backend.name == "memory":
            self.warn(
                "memory:// lives in this process only: other discovery commands will not see it "
                "(start local servers with 'discovery servers up', or give --url)"
            )
        return registry


def _kind_of(scheme: str) -> str:
    return next(kind for kind, schemes in SCHEMES.items() if scheme in schemes)


def _config_with_url(config: Path | None) -> Path | None:
    """The config file :func:`discovery.connect` would read, if it names a URL."""
    try:
        table = read_config(config)
    except ConfigurationError:
        # A missing or broken explicit file is reported by discovery.connect itself.
        return None
    return config_path(config) if table.get("url") else None


def make_consoles(color: bool | None) -> tuple[Console, Console]:
    """The stdout and stderr consoles.

    Args:
        color: True forces colour (even into a pipe), False turns it off, None
            lets rich decide (a terminal, ``FORCE_COLOR``, ``NO_COLOR``).

    Returns:
        ``(out, err)``.
    """
    force = True if color else None
    plain = True if color is False else None
    return (
        Console(highlight=False, force_terminal=force, no_color=plain),
        Console(stderr=True, highlight=False, force_terminal=force, no_color=plain),
    )


def configure_logging(verbose: int) -> None:
    """Send log records to stderr: warnings of discovery by default, more with ``-v``/``-vv``.

    The client libraries' own chatter (kazoo's reconnect warnings...) shows only with ``-vv``.
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


pass_state = click.make_pass_decorator(CliState)
"""Decorator that hands a command the group's :class:`CliState`."""
