"""The README's generated sections match the code they are generated from."""

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from discovery.cli._readme import capabilities_section, metrics_section, replace_section

README = Path(__file__).resolve().parent.parent / "README.md"


def test_capability_table_matches_the_code() -> None:
    text = README.read_text()
    assert replace_section(text, "capabilities", capabilities_section()) == text, "run: discovery readme README.md"


def test_metrics_table_matches_the_code() -> None:
    text = README.read_text()
    table = metrics_section()
    assert table is not None, "prometheus-client is installed by make test (the dashboard extra)"
    assert replace_section(text, "metrics", table) == text, "run: discovery readme README.md"


def test_readme_shows_both_commands() -> None:
    text = README.read_text()
    assert "make bench" in text and "make test" in text


def test_only_the_text_between_markers_changes() -> None:
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = f"# Title\n\nintro\n\n{start}\nold figures\n{end}\n\n## After\nkept\n"
    updated = replace_section(text, "bench", "new figures\n")
    assert updated == f"# Title\n\nintro\n\n{start}\nnew figures\n{end}\n\n## After\nkept\n"
    assert replace_section(updated, "bench", "new figures\n") == updated


def test_missing_markers_are_refused() -> None:
    for text in ("no markers here\n", "<!-- bench:end -->\n<!-- bench:start -->\n"):
        with pytest.raises(click.ClickException, match="bench:start"):
            replace_section(text, "bench", "figures")


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_sync_and_async_examples() -> None:
    blocks = _python_blocks()
    assert any("provider(" in block for block in blocks)
    assert any("discovery.aio" in block for block in blocks)


@pytest.mark.parametrize("block", _python_blocks(), ids=lambda block: block.splitlines()[-1].strip()[:40])
def test_every_python_example_in_the_readme_runs_as_written(block: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calling" in result.stdout or "Instance(" in result.stdout, result.stdout
