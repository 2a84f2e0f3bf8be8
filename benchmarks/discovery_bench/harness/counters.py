"""Server-side counters: how many requests a server received, and how far its history advanced.

Keep-alive cost is counted where it lands, on the server, not guessed from
the client: etcd's Prometheus endpoint ``/metrics`` (``etcd_http_received_total``
counts v2 API requests, ``grpc_server_msg_received_total`` the v3 requests
that arrive through the JSON gateway), ZooKeeper's ``mntr`` four-letter word
(``zk_packets_received``, pings included). The history position is etcd v2's
``X-Etcd-Index`` (which ``refresh=true`` writes advance, pushing watchers out of
the 1000-event window), etcd v3's revision, or ZooKeeper's last zxid
(``srvr``). Where a counter cannot be read (memory, a disabled command) the
answer is None and the report says "not available".
"""

from __future__ import annotations

import base64
import re

import requests

from discovery.bench._targets import Target, base_label
from discovery.servers import ServerError, four_letter_word

_TIMEOUT = 5.0
_ZXID = re.compile(r"^Zxid:\s*(0x[0-9a-fA-F]+)", re.MULTILINE)


class ServerCounters:
    """The request counter and history position of one target's server."""

    def __init__(self, target: Target) -> None:
        self.backend = base_label(target.label)
        host, port = target.hosts[0] if target.hosts else ("", 0)
        self._host = host
        self._port = port
        self._base = f"http://{host}:{port}"
        self._http = requests.Session()

    @property
    def request_counter(self) -> str:
        """What :meth:`requests` counts, for the report."""
        return {
            "etcd2": "etcd /metrics etcd_http_received_total (v2 API requests)",
            "etcd": "etcd /metrics grpc_server_msg_received_total (v3 requests)",
            "zookeeper": "ZooKeeper mntr zk_packets_received",
        }.get(self.backend, "none: in-process store")

    def requests(self) -> float | None:
        """The server's cumulative request count for this backend's API; None when unavailable."""
        try:
            if self.backend == "etcd2":
                return _metric_sum(self._metrics(), "etcd_http_received_total")
            if self.backend == "etcd":
                return _metric_sum(self._metrics(), "grpc_server_msg_received_total")
            if self.backend == "zookeeper":
                for line in four_letter_word(self._port, "mntr", host=self._host).splitlines():
                    name, _, value = line.partition("\t")
                    if name == "zk_packets_received":
                        return float(value)
        except (requests.RequestException, ServerError, ValueError):
            return None
        return None

    def history(self) -> int | None:
        """The server's history position (v2 index, v3 revision, zxid); None when unavailable."""
        try:
            if self.backend == "etcd2":
                response = self._http.get(f"{self._base}/v2/keys/", timeout=_TIMEOUT)
                return int(response.headers["X-Etcd-Index"])
            if self.backend == "etcd":
                body = {"key": base64.b64encode(b"\0").decode(), "count_only": True}
                response = self._http.post(f"{self._base}/v3/kv/range", json=body, timeout=_TIMEOUT)
                return int(response.json()["header"]["revision"])
            if self.backend == "zookeeper":
                match = _ZXID.search(four_letter_word(self._port, "srvr", host=self._host))
                return int(match.group(1), 16) if match else None
        except (requests.RequestException, ServerError, ValueError, KeyError):
            return None
        return None

    def _metrics(self) -> str:
        response = self._http.get(f"{self._base}/metrics", timeout=_TIMEOUT)
        response.raise_for_status()
        return response.text

    def close(self) -> None:
        """Release the HTTP connection."""
        self._http.close()


def _metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
