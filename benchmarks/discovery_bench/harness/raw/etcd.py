"""The etcd v3 baseline: the JSON gateway through ``requests``, as the registry's etcd backend talks to it.

``/v3/lease/grant`` and ``/v3/kv/put`` with base64 key, value and lease for
registrations; a ``/v3/watch`` stream on the prefix for watches.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from typing import Any

import requests

from discovery_bench.harness.raw.base import TIMEOUT, RawChannel, RawRegistrant, ValueCallback, host_port
from discovery_bench.harness.targets import BenchTarget


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EtcdRegistrant(RawRegistrant):
    """Puts keys with one lease through the v3 JSON gateway."""

    describes = "requests on the v3 JSON gateway: /v3/lease/grant, /v3/kv/put with the lease"

    def __init__(self, target: BenchTarget, service: str, ttl: float) -> None:
        super().__init__(target, service, ttl)
        host, port = host_port(target)
        self._base = f"http://{host}:{port}"
        self._http = requests.Session()
        self._lease: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(f"{self._base}{path}", json=body, timeout=TIMEOUT)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def register(self, instance_id: str, value: bytes) -> None:
        if self._lease is None:
            self._lease = str(self._post("/v3/lease/grant", {"TTL": math.ceil(self.ttl)})["ID"])
        key = f"{self.directory}/{instance_id}".encode()
        self._post("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": self._lease})

    def close(self) -> None:
        if self._lease is not None:
            self._post("/v3/lease/revoke", {"ID": self._lease})
        self._http.close()


class EtcdChannel(RawChannel):
    """Puts keys and reads a v3 watch stream through the JSON gateway."""

    describes = "v3 JSON gateway /v3/watch stream on the prefix (requests)"

    def __init__(self, target: BenchTarget, service: str) -> None:
        super().__init__(target, service)
        host, port = host_port(target)
        self._base = f"http://{host}:{port}"
        self._writer = requests.Session()
        self._reader = requests.Session()
        self._response: requests.Response | None = None
        self._created = threading.Event()
        prefix = f"{self.directory}/".encode()
        self._range = {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + bytes([prefix[-1] + 1]))}

    def start(self, on_value: ValueCallback) -> None:
        response = self._response = self._reader.post(
            f"{self._base}/v3/watch", json={"create_request": self._range}, stream=True, timeout=(TIMEOUT, None)
        )
        response.raise_for_status()

        def loop() -> None:
            try:
                for line in response.iter_lines():
                    if self._stopped.is_set():
                        return
                    if not line:
                        continue
                    arrived = time.perf_counter()
                    result = json.loads(line).get("result", {})
                    if result.get("created"):
                        self._created.set()
                    for event in result.get("events", ()):
                        value = event.get("kv", {}).get("value")
                        if value:
                            on_value(base64.b64decode(value), arrived)
            except (requests.RequestException, ValueError, AttributeError):
                return

        self._spawn(loop)
        if not self._created.wait(TIMEOUT):
            raise TimeoutError("the v3 watch stream was not created in time")

    def write(self, name: str, value: bytes) -> None:
        body = {"key": _b64(f"{self.directory}/{name}".encode()), "value": _b64(value)}
        self._writer.post(f"{self._base}/v3/kv/put", json=body, timeout=TIMEOUT).raise_for_status()

    def close(self) -> None:
        self._stopped.set()
        self.write("stop", b"{}")
        self._join()
        if self._response is not None:
            self._response.close()
        self._writer.post(f"{self._base}/v3/kv/deleterange", json=self._range, timeout=TIMEOUT)
        self._writer.close()
        self._reader.close()
