"""The README's generated sections match the code they are generated from."""

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import discovery.cli._readme as readme_command
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


def test_each_section_renderer_gets_the_report_and_the_readmes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path]] = []

    def figures(report: Path, readme_dir: Path) -> str:
        calls.append((report, readme_dir))
        (readme_dir / "plot.png").write_bytes(b"png")  # a file the section links to, beside the README
        return "figures\n![plot](plot.png)"

    def nothing(report: Path, readme_dir: Path) -> None:
        calls.append((report, readme_dir))

    monkeypatch.setattr(readme_command, "readme_sections", lambda: {"bench": figures, "other": nothing})
    repo = tmp_path / "repo"
    repo.mkdir()
    names = ("capabilities", "metrics", "bench", "other")
    (repo / "README.md").write_text("".join(f"<!-- {n}:start -->\nold\n<!-- {n}:end -->\n" for n in names))
    report = tmp_path / "bench-report" / "report.json"
    args = [str(repo / "README.md"), "--report", str(report), "--parity-dir", str(tmp_path / "none")]
    result = CliRunner().invoke(readme_command.readme, [*args, "--soak", str(tmp_path / "none.json")])
    assert result.exit_code == 0, result.output
    assert calls == [(report, repo), (report, repo)]
    text = (repo / "README.md").read_text()
    assert "<!-- bench:start -->\nfigures\n![plot](plot.png)\n<!-- bench:end -->" in text
    assert "<!-- other:start -->\nold\n<!-- other:end -->" in text  # None leaves the section as it was
    assert (repo / "plot.png").read_bytes() == b"png"


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
