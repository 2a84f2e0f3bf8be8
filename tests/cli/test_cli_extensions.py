"""Commands other distributions plug in: the installed benchmark, a missing one, and one that fails to load."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

import discovery.cli._extensions as extensions
from discovery.cli import main


def test_the_installed_benchmark_is_the_bench_command() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    assert "--profile" in result.output
    assert "bench" in extensions.readme_sections()


def _without(monkeypatch: pytest.MonkeyPatch, entries: list[EntryPoint]) -> None:
    # The entry points the interpreter would list, replaced by these: a
    # distribution cannot be uninstalled for one test.
    monkeypatch.setattr(extensions, "entry_points", lambda group: [e for e in entries if e.group == group])


def test_a_missing_benchmark_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, [])
    command = extensions.extension_commands()["bench"]
    result = CliRunner().invoke(command, ["--profile", "smoke", "--out", "x"], standalone_mode=True)
    assert result.exit_code == 1
    assert "pip install ./benchmarks" in result.output
    assert "pip install ./benchmarks" in CliRunner().invoke(command, ["--help"]).output


def test_a_command_that_fails_to_load_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint("bench", "discovery_no_such_module:command", extensions.COMMANDS)
    _without(monkeypatch, [broken])
    command = extensions.extension_commands()["bench"]
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1
    assert "failed to load" in result.output and "ModuleNotFoundError" in result.output
