"""``discovery readme``: regenerate the README's generated sections from code and from real runs.

Five sections are never edited by hand, each between ``<!-- NAME:start -->``
and ``<!-- NAME:end -->`` markers: ``capabilities`` (from the installed
backends' declarations of capabilities and limits), ``metrics`` (from the
catalogue of :mod:`discovery.metrics`), ``parity`` (from the conformance suite's JSON
results of the last ``make test``), ``soak`` (from the last chaos soak's
``soak.json``) and ``bench`` (from the benchmark's
``report.json``, rendered by the benchmark distribution, found through the
``discovery.readme_sections`` entry point, given the report's path and the
README's directory, beneath which it may copy the plot it links to). A test
checks that the capability and metrics sections match the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from discovery.cli._errors import CliError
from discovery.cli._extensions import KNOWN, readme_sections
from discovery.cli._render import capability_legend_markdown, capability_table_markdown, limits_table_markdown
from discovery.testing.parity import load_parity, parity_table_markdown
from discovery.testing.soak.report import markdown_table


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the body between the ``name`` markers replaced.

    Raises:
        click.ClickException: the markers are missing.
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise click.ClickException(f"the README has no {start} ... {end} section")
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def metrics_section() -> str | None:
    """The table of Prometheus metrics, from :data:`discovery.metrics.METRICS`; None without prometheus-client."""
    try:
        from discovery.metrics import metrics_table
    except ImportError:
        return None
    return metrics_table()


def capabilities_section() -> str:
    """The capability table, its legend, and the backends' declared limits."""
    limits = (
        "Each backend's own limits, declared in code and refused by validation "
        "before anything is sent (`InvalidName` or `InvalidMeta` naming the limit; "
        "`meta_limit` cannot exceed the largest value less 1,024 bytes):\n\n"
    )
    return capability_table_markdown() + "\n" + capability_legend_markdown() + "\n" + limits + limits_table_markdown()


@click.command("readme")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default=Path("README.md"))
@click.option(
    "--parity-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("parity-results"),
    show_default=True,
    help="Where the conformance suite wrote its results.",
)
@click.option(
    "--soak",
    "soak_report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("soak-report/soak.json"),
    show_default=True,
    help="The chaos soak's report to take the table from (skipped if absent).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench-report/report.json"),
    show_default=True,
    help="The benchmark report to take the figures from (skipped if absent).",
)
def readme(path: Path, parity_dir: Path, soak_report: Path, report: Path) -> None:
    """Regenerate the README's capability, metrics, parity, soak and benchmark sections.

    Example: discovery readme README.md --parity-dir parity-results --report bench-report/report.json
    """
    text = path.read_text()
    text = replace_section(text, "capabilities", capabilities_section())
    metrics = metrics_section()
    if metrics is not None:
        text = replace_section(text, "metrics", metrics)
    if soak_report.is_file():
        text = replace_section(text, "soak", markdown_table(json.loads(soak_report.read_text())))
    documents = load_parity(parity_dir)
    if documents:
        text = replace_section(text, "parity", parity_table_markdown(documents))
    renderers = readme_sections()
    for name, render in renderers.items():
        body = render(report, path.parent)
        if body is not None:
            text = replace_section(text, name, body)
    path.write_text(text)
    click.echo(f"updated {path}")
    if "bench" not in renderers and report.is_file():
        raise CliError(f"the bench section was left as it was: {KNOWN['bench'].missing()}")
