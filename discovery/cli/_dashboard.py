"""The commands that serve a registry to other tools: ``dashboard`` (a live web page) and ``sd`` (Prometheus targets).

Both keep one service cache open until Ctrl-C, SIGTERM or SIGHUP and exit 0
then. ``sd`` exits 4 when its watch gives up, as ``watch`` does; the
dashboard goes on serving the last contents and shows the watch broken.
``dashboard`` needs the ``dashboard`` extra (starlette, uvicorn), imported
only when it runs, so the rest of the command works without it; it listens
on loopback unless ``--allow-remote`` says otherwise, since the page has no
authentication.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from discovery._validation import check_prefix
from discovery.cli._context import CliState, pass_state
from discovery.cli._errors import FAILURE, CliError
from discovery.cli._signals import until_stopped
from discovery.sd import TargetFile, Written

_URL_HELP = "Registry URL, as 'discovery --url URL ...' [default: as for every command]."


def _with_url(state: CliState, url: str | None) -> CliState:
    return dataclasses.replace(state, url=url) if url else state


@click.command(
    epilog="""\b
Examples:
  discovery dashboard                            # http://127.0.0.1:8080/, every service
  discovery dashboard --prefix buzz --port 9000
  discovery dashboard --url etcd://10.0.0.1:2379/services
  discovery dashboard --host 0.0.0.0 --allow-remote   # a wall screen on the network; no authentication
  curl -s "http://127.0.0.1:8080/sd/prometheus?prefix=buzz"
"""
)
@click.option("--url", help=_URL_HELP)
@click.option("--prefix", default="", help="The services to show [default: all].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on (0: a free one)."
)
@click.option(
    "--allow-remote", is_flag=True, help="Allow a --host that is not loopback (the page has no authentication)."
)
@pass_state
def dashboard(state: CliState, url: str | None, prefix: str, host: str, port: int, allow_remote: bool) -> None:
    """Serve a live page of the registry: status tree, instances, events, until Ctrl-C.

    One service cache in this process; browsers get its changes pushed over
    Server-Sent Events. Also serves /sd/prometheus (Prometheus http_sd
    targets), /api/snapshot (JSON) and /metrics. Listens on loopback unless
    --allow-remote: the page is read-only and has no authentication.
    """
    try:
        from discovery.dashboard import create_app, is_loopback, serve
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs starlette and uvicorn ({exc}): pip install 'discovery-registry[dashboard]'", FAILURE
        ) from exc
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"--host {host} is not a loopback address and the dashboard has no authentication; "
            "add --allow-remote to serve it to the network anyway"
        )
    prefix = check_prefix(prefix)
    if not is_loopback(host):
        state.warn(
            f"serving on {host}: anyone who can reach it sees every instance under the prefix "
            "(the page is read-only and has no authentication)"
        )
    state = _with_url(state, url)

    def ready(address: str) -> None:
        click.echo(f"dashboard on {address} (prefix {prefix or '/'})")
        state.note("press Ctrl-C to stop")

    registry = state.connect()
    try:
        # The top-level service, as `tree --watch` keeps it: a definition above the prefix counts too.
        with until_stopped(), registry.cache(prefix.split("/", 1)[0]) as cache:
            serve(create_app(registry, prefix, cache=cache), host, port, on_ready=ready)
    finally:
        registry.close()


@click.command(
    epilog="""\b
Examples:
  discovery sd --file /etc/prometheus/targets/discovery.json
  discovery sd --file targets.json --prefix buzz --url zookeeper://10.0.0.1:2181/services

\b
In prometheus.yml:
  scrape_configs:
    - job_name: discovery
      file_sd_configs: [{files: [/etc/prometheus/targets/discovery.json]}]
"""
)
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to keep current (its directory must exist).",
)
@click.option("--prefix", default="", help="The services to list [default: all].")
@click.option("--url", help=_URL_HELP)
@pass_state
def sd(state: CliState, path: Path, prefix: str, url: str | None) -> None:
    """Keep a Prometheus file_sd_configs file of the instances under a prefix, until Ctrl-C.

    One target group per service and distinct label set, targets
    ADDRESS:PORT (instances without either are skipped), labels
    __meta_discovery_service, __meta_discovery_zone and
    __meta_discovery_meta_<key>. The file is rewritten atomically (a
    temporary file renamed over it) after every burst of changes.
    """
    prefix = check_prefix(prefix)
    state = _with_url(state, url)

    def show(written: Written) -> None:
        count, groups = written.target_count, len(written.groups)
        click.echo(
            f"wrote {count} target{'' if count == 1 else 's'} in {groups} group{'' if groups == 1 else 's'} "
            f"to {written.path} (rev {written.revision})"
        )

    registry = state.connect()
    try:
        with until_stopped(), registry.cache(prefix) as cache:
            TargetFile(cache, path, prefix).run(on_write=show)
    finally:
        registry.close()


COMMANDS = (dashboard, sd)
"""The commands of this module, in the order ``--help`` lists them."""
