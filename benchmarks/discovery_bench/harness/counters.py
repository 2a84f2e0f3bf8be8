"""Server-side counters: how many requests a server received, and how far its history advanced.

Keep-alive cost is counted where it lands, on the server, not guessed from
the client: etcd's Prometheus endpoint ``/metrics`` (``etcd_http_received_total``
counts v2 API requests, ``grpc_server_msg_received_total`` the v3 requests
that arrive through the JSON gateway), ZooKeeper's ``mntr`` four-letter word
(``zk_packets_received``, pings included). The history position is etcd v2's
``X-Etcd-Index`` (which ``refresh=true`` writes advance, pushing watchers out of
the 1000-event window), etcd v3's revision, or ZooKeeper's last zxid
(``srvr``). Where a counter cannot be read (memory, a disabled command) the
answer is None and the report says "not available". :class:`ServerCpu`
reads the CPU time of the server processes a run started, with psutil.
"""

from __future__ import annotations

import base64
import re

import psutil
import requests

from discovery.servers import ServerError, four_letter_word
from discovery_bench.harness.targets import BenchTarget

_TIMEOUT = 5.0
_ZXID = re.compile(r"^Zxid:\s*(0x[0-9a-fA-F]+)", re.MULTILINE)


class ServerCounters:
    """The request counter and history position of one target's server; this base reads none (in process)."""

    request_counter = "none: in-process store"
    """What :meth:`requests` counts, for the report."""

    def __init__(self, target: BenchTarget) -> None:
        host, port = target.hosts[0] if target.hosts else ("", 0)
        self._host = host
        self._port = port
        self._base = f"http://{host}:{port}"
        self._http = requests.Session()

    def requests(self) -> float | None:
        """The server's cumulative request count for this backend's API; None when unavailable."""
        try:
            return self._requests()
        except (requests.RequestException, ServerError, ValueError):
            return None

    def history(self) -> int | None:
        """The server's history position (v2 index, v3 revision, zxid); None when unavailable."""
        try:
            return self._history()
        except (requests.RequestException, ServerError, ValueError, KeyError):
            return None

    def _requests(self) -> float | None:
        return None

    def _history(self) -> int | None:
        return None

    def _metric(self, name: str) -> float:
        response = self._http.get(f"{self._base}/metrics", timeout=_TIMEOUT)
        response.raise_for_status()
        total = 0.0
        for line in response.text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self) -> None:
        """Release the HTTP connection."""
        self._http.close()


class _Etcd2Counters(ServerCounters):
    request_counter = "etcd /metrics etcd_http_received_total (v2 API requests)"

    def _requests(self) -> float | None:
        return self._metric("etcd_http_received_total")

    def _history(self) -> int | None:
        response = self._http.get(f"{self._base}/v2/keys/", timeout=_TIMEOUT)
        return int(response.headers["X-Etcd-Index"])


class _EtcdCounters(ServerCounters):
    request_counter = "etcd /metrics grpc_server_msg_received_total (v3 requests)"

    def _requests(self) -> float | None:
        return self._metric("grpc_server_msg_received_total")

    def _history(self) -> int | None:
        body = {"key": base64.b64encode(b"\0").decode(), "count_only": True}
        response = self._http.post(f"{self._base}/v3/kv/range", json=body, timeout=_TIMEOUT)
        return int(response.json()["header"]["revision"])


class _ZooKeeperCounters(ServerCounters):
    request_counter = "ZooKeeper mntr zk_packets_received"

    def _requests(self) -> float | None:
        for line in four_letter_word(self._port, "mntr", host=self._host).splitlines():
            name, _, value = line.partition("\t")
            if name == "zk_packets_received":
                return float(value)
        return None

    def _history(self) -> int | None:
        match = _ZXID.search(four_letter_word(self._port, "srvr", host=self._host))
        return int(match.group(1), 16) if match else None


_COUNTERS: dict[str, type[ServerCounters]] = {
    "etcd": _EtcdCounters,
    "etcd2": _Etcd2Counters,
    "zookeeper": _ZooKeeperCounters,
}


def server_counters(target: BenchTarget) -> ServerCounters:
    """The counters of ``target``'s server (none for a backend without a server)."""
    return _COUNTERS.get(target.backend, ServerCounters)(target)


class ServerCpu:
    """The CPU seconds a target's server processes have used, read with psutil from their pids.

    Only the servers the run started are visible (``--url`` registries are
    someone else's processes, maybe on other machines): then
    :attr:`available` is False and :meth:`seconds` None.
    """

    def __init__(self, pids: list[int]) -> None:
        self._processes: list[psutil.Process] = []
        for pid in pids:
            try:
                self._processes.append(psutil.Process(pid))
            except psutil.Error:
                continue

    @property
    def available(self) -> bool:
        """Whether any server process can be read."""
        return bool(self._processes)

    def seconds(self) -> float | None:
        """User plus system CPU seconds of every server process; None when one cannot be read."""
        if not self._processes:
            return None
        total = 0.0
        try:
            for process in self._processes:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            return None
        return total
