"""The ``discovery`` command: local servers, registrations, watches and the status tree from a shell.

``discovery`` is a click group; its options choose the registry the way
:func:`discovery.connect` does (``--url``, ``$DISCOVERY_URL``, ``--config`` /
``$DISCOVERY_CONFIG`` / ``./discovery.toml``), then fall back to the local
servers ``discovery servers up`` keeps running, then to ``memory://``. The
commands live in private modules: :mod:`~discovery.cli._commands` (register,
watch, tree...), :mod:`~discovery.cli._servers`, :mod:`~discovery.cli._demo`;
other distributions add theirs (``discovery bench``) through entry points,
found by :mod:`~discovery.cli._extensions`; errors become one ``error:`` line
and the exit codes of :mod:`~discovery.cli._errors`.
"""

from __future__ import annotations

from pathlib import Path

import click

import discovery
from discovery.capabilities import Capability
from discovery.cli._commands import COMMANDS
from discovery.cli._context import PREFERRED_SCHEMES, CliState, configure_logging, make_consoles
from discovery.cli._dashboard import COMMANDS as SERVING_COMMANDS
from discovery.cli._demo import demo
from discovery.cli._errors import ErrorHandlingGroup, exit_codes_epilog
from discovery.cli._extensions import extension_commands
from discovery.cli._readme import readme
from discovery.cli._servers import servers
from discovery.cli._soak import soak
from discovery.cli._state import default_state_dir

__all__ = ["main"]

_EPILOG = f"""\b
Examples:
  discovery servers up                      # local etcd and ZooKeeper, in the background
  discovery register buzz/api host-1 --port 8080   # terminal 1: stays registered until Ctrl-C
  discovery watch buzz                      # terminal 2: every change, none lost
  discovery tree --watch                    # the status tree, redrawn live
  curl "http://$(discovery pick buzz/api)/health"   # one instance to call
  discovery --backend zookeeper ls          # the same on the local ZooKeeper
  discovery demo seed                       # the naive re-watch loop against discovery's watch

\b
Which registry: --url, else $DISCOVERY_URL, else url in the [registry] table of
--config / $DISCOVERY_CONFIG / ./discovery.toml, else the running local servers
(etcd first, or --backend), else memory:// (one process only).

{exit_codes_epilog()}
"""


@click.group(cls=ErrorHandlingGroup, epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(discovery.__version__, prog_name="discovery")
@click.option("--url", metavar="URL", help="Registry URL, e.g. etcd://127.0.0.1:2379/services [default: see below].")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file with a [registry] table [default: $DISCOVERY_CONFIG, else ./discovery.toml].",
)
@click.option(
    "--backend",
    type=click.Choice(PREFERRED_SCHEMES),
    help="Which running local server to use (see 'discovery servers up').",
)
@click.option(
    "--require",
    multiple=True,
    type=click.Choice([c.value for c in Capability]),
    metavar="CAPABILITY",
    help="A capability the backend must have (repeatable; see 'discovery backends'); exit 3 if it lacks one.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DISCOVERY_STATE_DIR",
    help="Where 'servers up' keeps its state [default: $DISCOVERY_STATE_DIR, else ~/.local/state/discovery].",
)
@click.option("--color/--no-color", default=None, help="Force colour on or off [default: on for a terminal].")
@click.option("-v", "--verbose", count=True, help="Log more: -v info, -vv debug (client libraries too).")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    config: Path | None,
    backend: str | None,
    require: tuple[str, ...],
    state_dir: Path | None,
    color: bool | None,
    verbose: int,
) -> None:
    """discovery: a service registry with complete watches, on etcd, ZooKeeper or in memory."""
    configure_logging(verbose)
    out, err = make_consoles(color)
    ctx.obj = CliState(
        url=url,
        config=config,
        backend=backend,
        require=require,
        state_dir=(state_dir or default_state_dir()).expanduser().resolve(),
        out=out,
        err=err,
    )


for _command in (*COMMANDS, *SERVING_COMMANDS, servers, demo, soak, readme):
    main.add_command(_command)
for _name, _command in extension_commands().items():
    main.add_command(_command, _name)
