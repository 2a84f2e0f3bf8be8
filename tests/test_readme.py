"""The README's generated sections match the code they are generated from."""

from pathlib import Path

from discovery.cli._readme import capabilities_section, replace_section

README = Path(__file__).resolve().parent.parent / "README.md"


def test_capability_table_matches_the_code() -> None:
    text = README.read_text()
    assert replace_section(text, "capabilities", capabilities_section()) == text, "run: discovery readme README.md"


def test_readme_shows_both_commands() -> None:
    text = README.read_text()
    assert "make bench" in text and "make test" in text
