"""Commands and README sections that other distributions add to the ``discovery`` CLI, found through entry points.

A distribution adds a command by declaring a :class:`click.Command` in the
``discovery.commands`` group, and a generated README section by declaring,
in the ``discovery.readme_sections`` group and under the section's marker
name, a :data:`ReadmeSection`: a function that takes the benchmark report's
path (``discovery readme --report``) and the README's directory, and returns
the section's Markdown, or None when it has nothing to show. A file the
section links to (a plot) is the function's to write beneath the README's
directory, and the Markdown links to it relative to that directory::

    [project.entry-points."discovery.commands"]
    bench = "discovery_bench.command:bench_command"

    [project.entry-points."discovery.readme_sections"]
    bench = "discovery_bench.report.readme:bench_section"

The core never imports such a distribution. One this project ships but
keeps apart (the benchmark, :data:`KNOWN`) still has its command when it is
not installed: a stand-in that says how to install it and exits 1, as does a
command whose entry point fails to load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click

from discovery.cli._errors import CliError

COMMANDS = "discovery.commands"
README_SECTIONS = "discovery.readme_sections"

ReadmeSection = Callable[[Path, Path], str | None]
"""Renders one README section from (the report's path, the README's directory); None leaves the section as it is.

It may write the files its Markdown links to beneath the README's directory
(the benchmark copies its plot to ``docs/bench/``), and links to them
relative to it.
"""


@dataclass(frozen=True)
class Known:
    """An extension this project ships as a distribution of its own.

    Attributes:
        what: what it is, in a sentence's subject (``the benchmark``).
        summary: the stand-in command's one-line help.
        distribution: the distribution's name.
        install: how to install it from a checkout.
    """

    what: str
    summary: str
    distribution: str
    install: str

    def missing(self) -> str:
        """The message when it is not installed."""
        return f"{self.what} is a separate distribution ({self.distribution}): {self.install}"


KNOWN = {
    "bench": Known(
        what="the benchmark",
        summary="Compare the backends (not installed: pip install ./benchmarks).",
        distribution="discovery-registry-bench",
        install="pip install ./benchmarks (or run make bench)",
    )
}
"""Per command or README section name, the extension this project ships that provides it."""


def _stand_in(name: str, summary: str, message: str) -> click.Command:
    def refuse(args: tuple[str, ...]) -> None:
        raise CliError(message)

    return click.Command(
        name,
        callback=refuse,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"{summary}\n\n{message}",
        short_help=summary,
        context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
    )


def _load_command(entry: EntryPoint) -> click.Command:
    try:
        command = entry.load()
    except Exception as exc:  # a broken extension must not take the whole CLI down
        message = f"command {entry.name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}"
        return _stand_in(entry.name, "Failed to load; run it for the reason.", message)
    if not isinstance(command, click.Command):
        message = f"command {entry.name!r} ({entry.value}) is not a click command"
        return _stand_in(entry.name, "Not a click command; run it for the reason.", message)
    return command


def extension_commands() -> dict[str, click.Command]:
    """The installed distributions' commands, and a stand-in for each known one that is not installed.

    Returns:
        Per entry-point name, the command, sorted by name.
    """
    commands = {entry.name: _load_command(entry) for entry in entry_points(group=COMMANDS)}
    for name, known in KNOWN.items():
        if name not in commands:
            commands[name] = _stand_in(name, known.summary, known.missing())
    return dict(sorted(commands.items()))


def readme_sections() -> dict[str, ReadmeSection]:
    """The installed distributions' README section renderers, by section name.

    Raises:
        click.ClickException: a renderer's entry point failed to load.
    """
    sections: dict[str, ReadmeSection] = {}
    for entry in entry_points(group=README_SECTIONS):
        try:
            sections[entry.name] = entry.load()
        except Exception as exc:
            raise CliError(f"README section {entry.name!r} ({entry.value}) failed to load: {exc}") from exc
    return sections
