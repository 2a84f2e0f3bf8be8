"""The ``discovery`` command's help, exit codes, error lines, and its one-shot commands on a real etcd.

Every error path is driven through the real command in a subprocess and
checked for its one ``error:`` line (no traceback) and its documented exit
code; the one-shot commands (define, ls, tree, deregister, undefine, backends)
run against the session's etcd under a fresh root per test.
"""

from __future__ import annotations

import json
import re
import signal
from typing import TYPE_CHECKING

import pytest

import discovery
from discovery.cli._errors import EXIT_CODES, exit_code_for
from discovery.cli._render import capability_legend_markdown, capability_table_markdown
from discovery.servers import EtcdCluster, ZooKeeperCluster, free_ports

if TYPE_CHECKING:
    from tests.cli.conftest import Cli, Result

COMMANDS = [
    ["register"],
    ["deregister"],
    ["define"],
    ["undefine"],
    ["ls"],
    ["tree"],
    ["pick"],
    ["watch"],
    ["backends"],
    ["servers"],
    ["servers", "up"],
    ["servers", "status"],
    ["servers", "down"],
    ["demo"],
    ["demo", "seed"],
]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def assert_error(result: Result, code: int, message: str) -> None:
    """One ``error:`` line naming ``message``, no traceback, exit ``code``."""
    assert result.code == code, result
    err = result.err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert message in lines[0], err
    assert "Traceback" not in err


def test_group_help_lists_commands_and_exit_codes(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.code == 0
    for name in (
        "register",
        "deregister",
        "define",
        "undefine",
        "ls",
        "tree",
        "watch",
        "pick",
        "backends",
        "servers",
        "demo",
    ):
        assert re.search(rf"^\s+{name}\s", result.out, re.MULTILINE), name
    assert "Exit codes:" in result.out
    for entry in EXIT_CODES:
        assert re.search(rf"^\s+{entry.code}\s+{re.escape(entry.meaning)}", result.out, re.MULTILINE), entry


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(cli: Cli, command: list[str]) -> None:
    result = cli.run(*command, "--help")
    assert result.code == 0, result.err
    assert "Example" in result.out
    assert "discovery " in result.out.split("Example", 1)[1]


def test_exit_code_table_is_most_specific_first() -> None:
    assert exit_code_for(discovery.UnknownBackend("x", [])) == 3
    assert exit_code_for(discovery.CapabilityMissing("zookeeper", ["expiry-cause"])) == 3
    assert exit_code_for(discovery.InvalidOption("x", 1, "bad")) == 2
    assert exit_code_for(discovery.ConfigurationError("bad file")) == 2
    assert exit_code_for(discovery.InvalidName("service", "a//b", "bad")) == 2
    assert exit_code_for(discovery.BackendUnavailable("etcd", "down")) == 4
    assert exit_code_for(discovery.WatchBroken("", "gone")) == 4
    assert exit_code_for(discovery.NotFound("a")) == 5
    assert exit_code_for(discovery.AlreadyRegistered("a", "b")) == 6
    assert exit_code_for(discovery.RegistryClosed("closed")) == 1


@pytest.fixture
def etcd_url(etcd_cluster: EtcdCluster, root: str) -> str:
    return etcd_cluster.url("etcd", root)


def test_usage_errors_exit_2(cli: Cli, etcd_url: str) -> None:
    assert_error(cli.run("--bogus", "ls"), 2, "No such option '--bogus'")
    assert_error(cli.run("register"), 2, "Missing argument 'SERVICE'")
    assert_error(cli.run("--url", etcd_url, "register", "a", "b", "--meta", "novalue"), 2, "is not KEY=VALUE")
    assert_error(cli.run("--url", etcd_url, "define", "buzz//api"), 2, "invalid service 'buzz//api'")
    assert_error(cli.run("--url", etcd_url, "register", "a", "_b"), 2, "invalid instance_id '_b'")
    assert_error(cli.run("--url", etcd_url, "register", "a", "b", "--port", "70000"), 2, "invalid port 70000")
    assert_error(cli.run("--url", "memory://?bogus=1", "ls"), 2, "option 'bogus'=***: unknown option")
    assert_error(cli.run("--config", "missing.toml", "ls"), 2, "config file 'missing.toml' does not exist")
    assert_error(cli.run("--url", etcd_url, "--backend", "etcd", "ls"), 2, "cannot go with --url")
    assert_error(cli.run("demo", "seed", "--backend", "mysql"), 2, "choose among")


def test_unknown_backend_and_missing_capability_exit_3(
    cli: Cli, zookeeper_cluster: ZooKeeperCluster, root: str
) -> None:
    assert_error(cli.run("--url", "nope://127.0.0.1/x", "ls"), 3, "unknown backend scheme 'nope'")
    url = zookeeper_cluster.url("zookeeper", root)
    assert_error(cli.run("--url", url, "--require", "expiry-cause", "ls"), 3, "lacks required capabilities")


def test_unreachable_server_exits_4(cli: Cli) -> None:
    (port,) = free_ports(1)
    result = cli.run("--url", f"etcd://127.0.0.1:{port}/x?timeout=1", "ls")
    assert_error(result, 4, "etcd: ")
    assert_error(cli.run("--backend", "zookeeper", "ls"), 4, "no local servers are running")


def test_not_found_exits_5(cli: Cli, etcd_url: str) -> None:
    assert_error(cli.run("--url", etcd_url, "undefine", "buzz/api"), 5, "service definition 'buzz/api' not found")
    assert_error(cli.run("--url", etcd_url, "deregister", "buzz/api", "h1"), 5, "instance 'h1' of 'buzz/api' not found")


def test_an_id_held_by_another_registrant_exits_6(cli: Cli, etcd_url: str) -> None:
    holder = cli.spawn("--url", etcd_url, "register", "buzz/api", "h1", "--ttl", "30")
    holder.wait_for(lambda line: line.startswith("registered "), what="the ready line")
    assert_error(cli.run("--url", etcd_url, "register", "buzz/api", "h1"), 6, "held by another live registrant")
    assert holder.stop(signal.SIGTERM) == 0


def test_connecting_says_which_backend_and_url_on_stderr(cli: Cli, etcd_url: str) -> None:
    result = cli.run("--url", etcd_url, "ls")
    assert result.code == 0
    assert f"using etcd at {etcd_url} (--url)" in result.err
    from_env = cli.run("ls", env={"DISCOVERY_URL": etcd_url})
    assert f"using etcd at {etcd_url} ($DISCOVERY_URL)" in from_env.err
    (cli.cwd / "discovery.toml").write_text(f'[registry]\nurl = "{etcd_url}"\n')
    from_file = cli.run("ls")
    assert f"using etcd at {etcd_url} (config file discovery.toml)" in from_file.err
    (cli.cwd / "discovery.toml").unlink()
    fallback = cli.run("ls")
    assert fallback.code == 0
    assert "using memory at memory://" in fallback.err
    assert "warning: memory:// lives in this process only" in fallback.err


def test_define_ls_deregister_undefine(cli: Cli, etcd_url: str) -> None:
    assert cli.run("--url", etcd_url, "define", "buzz/api", "--min", "2").code == 0
    with discovery.connect(etcd_url) as registry:
        registry.register("buzz/api", "h1", address="10.0.0.5", port=8080, meta={"version": "1.4.2"}, ttl=30)
        listed = cli.run("--url", etcd_url, "ls", "--json")
        assert listed.code == 0, listed.err
        (row,) = [json.loads(line) for line in listed.out.splitlines()]
        assert {k: row[k] for k in ("service", "id", "address", "port", "meta")} == {
            "service": "buzz/api",
            "id": "h1",
            "address": "10.0.0.5",
            "port": 8080,
            "meta": {"version": "1.4.2"},
        }
        assert row["revision"] > 0
        table = cli.run("--url", etcd_url, "ls", "buzz")
        assert "h1" in table.text and "version=1.4.2" in table.text and "1 instance at revision" in table.text
        assert cli.run("--url", etcd_url, "deregister", "buzz/api", "h1").code == 0
        assert registry.instances("buzz/api") == []
        assert registry.definitions() == {"buzz/api": 2}
        assert cli.run("--url", etcd_url, "undefine", "buzz/api").code == 0
        assert registry.definitions() == {}


def nodes(output: str) -> dict[str, str]:
    """The status tree's lines by node name, colour codes kept."""
    found = {}
    for line in output.splitlines():
        match = re.search(r"● (\S+)", ANSI.sub("", line))
        if match:
            found[match.group(1)] = line
    return found


def test_tree_colours_each_health(cli: Cli, etcd_url: str) -> None:
    with discovery.connect(etcd_url) as registry:
        registry.define("shop/web", 1)
        registry.define("buzz/api", 2)
        registry.define("buzz/db", 1)
        registry.register("shop/web", "w1", ttl=30)
        registry.register("buzz/api", "a1", ttl=30)
        coloured = cli.run("--url", etcd_url, "--color", "tree")
        assert coloured.code == 0, coloured.err
        tree = nodes(coloured.out)
        green, yellow, red = "\x1b[32m", "\x1b[33m", "\x1b[31m"
        assert green in tree["web"] and "1/1  up" in ANSI.sub("", tree["web"])
        assert yellow in tree["api"] and "1/2  degraded (below-minimum)" in ANSI.sub("", tree["api"])
        assert red in tree["db"] and "0/1  down (no-instances)" in ANSI.sub("", tree["db"])
        assert red in tree["buzz"] and "down (subtree)" in ANSI.sub("", tree["buzz"])
        uncoloured = cli.run("--url", etcd_url, "--no-color", "tree", "buzz")
        assert "\x1b[" not in uncoloured.out
        assert set(nodes(uncoloured.out)) == {"buzz", "api", "db"}
        forced = cli.run("--url", etcd_url, "tree", env={"FORCE_COLOR": "1"})
        assert yellow in nodes(forced.out)["api"]


def test_backends_shows_capabilities_and_options_from_the_code(cli: Cli) -> None:
    result = cli.run("backends")
    assert result.code == 0, result.err
    for capability in discovery.Capability:
        assert capability.value in result.out
        assert capability.description in result.out
    for scheme in discovery.available_backends():
        assert scheme in result.out
    for option in ("default_ttl", "history_window"):
        assert option in result.out
    markdown = cli.run("backends", "--markdown")
    assert markdown.out == capability_table_markdown() + "\n" + capability_legend_markdown()


def test_capability_table_markdown_has_a_row_per_backend() -> None:
    lines = capability_table_markdown().splitlines()
    assert lines[0].count("|") == len(discovery.Capability) + 2
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert "`memory://`" in rows
    memory_cells = [cell.strip() for cell in rows["`memory://`"].split("|")[2:-1]]
    assert memory_cells == ["✓"] * len(discovery.Capability)
    for line in lines[2:]:
        assert set(cell.strip() for cell in line.split("|")[2:-1]) <= {"✓", "✗"}


def test_version(cli: Cli) -> None:
    result = cli.run("--version")
    assert result.code == 0
    assert discovery.__version__ in result.out
