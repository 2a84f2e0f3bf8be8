"""A real Prometheus server on loopback, for the tests of metrics and service discovery.

:class:`PrometheusServer` starts Debian's ``/usr/bin/prometheus`` on a free
port of 127.0.0.1 with a configuration the test gives (a scrape job of the
dashboard's ``/metrics``, an ``http_sd_configs`` job pointing at its
``/sd/prometheus``), in a temporary directory, as a
:class:`~discovery.servers.Member` — so it is stopped by its process id
however the test ends, and never outlives Python. :meth:`~PrometheusServer.targets`
and :meth:`~PrometheusServer.query` read its HTTP API.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any

from discovery.servers import free_ports
from discovery.servers._http import HttpError, request_json
from discovery.servers._process import Member, register_temp_dir, release_temp_dir

__all__ = ["PROMETHEUS", "PrometheusServer"]

PROMETHEUS = "/usr/bin/prometheus"
"""Debian's prometheus binary (installed by ``make test``'s system packages)."""


def _ready(member: Member) -> bool:
    try:
        request_json(f"http://{member.address}/api/v1/status/buildinfo", timeout=1.0)
    except HttpError:
        return False
    return True


class PrometheusServer:
    """Prometheus with ``config`` (YAML text), on ``127.0.0.1:<port>``, started on enter and stopped on exit.

    Args:
        config: the ``prometheus.yml`` text.
        binary: the prometheus executable.
    """

    def __init__(self, config: str, binary: str = PROMETHEUS) -> None:
        if shutil.which(binary) is None:
            raise FileNotFoundError(f"{binary} not found: install Debian's prometheus (make system-packages)")
        self._directory = Path(tempfile.mkdtemp(prefix="discovery-prometheus-"))
        register_temp_dir(self._directory)
        (self._directory / "prometheus.yml").write_text(config)
        (port,) = free_ports(1)
        self.member = Member(
            kind="prometheus",
            name="prometheus",
            client_port=port,
            peer_port=0,
            data_dir=self._directory,
            command=[
                binary,
                "--config.file=prometheus.yml",
                "--storage.tsdb.path=data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            health=_ready,
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.member.address}"

    def __enter__(self) -> PrometheusServer:
        self.member.launch()
        try:
            self.member.wait_healthy(60)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server (by its process id) and remove its directory. Idempotent."""
        self.member.stop()
        release_temp_dir(self._directory)

    def _api(self, path: str) -> Any:
        answer = request_json(f"{self.url}{path}", timeout=5.0)
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise HttpError(f"prometheus answered {answer!r:.300}")
        return answer["data"]

    def targets(self) -> list[dict[str, Any]]:
        """The active targets (``/api/v1/targets``), each with ``labels``, ``discoveredLabels`` and ``health``.

        Raises:
            HttpError: the server did not answer as expected.
        """
        return list(self._api("/api/v1/targets?state=active")["activeTargets"])

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The result of an instant query (``/api/v1/query``): each with ``metric`` (labels) and ``value``.

        Raises:
            HttpError: the server did not answer as expected.
        """
        return list(self._api(f"/api/v1/query?query={urllib.parse.quote(expression)}")["result"])

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.member.log_tail()
