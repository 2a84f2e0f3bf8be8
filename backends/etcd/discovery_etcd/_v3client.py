"""A thin client for etcd's v3 JSON gateway (``POST /v3/...``), on requests.

Why our own: etcd3gw speaks the same gateway and is maintained, but its
watch ignores the ``canceled`` / ``compact_revision`` answer (a watch from a
compacted revision then waits forever) and its watch thread dies silently on
errors; python-etcd3 (gRPC) is unmaintained and breaks on current protobuf.
The gateway is small: JSON bodies, keys and values in base64, 64-bit numbers
as strings, zero values left out. This client does unary calls with
failover (endpoints tried in the URL's order, starting from the last one
that answered; a connection error moves on to the next), optional
authentication (``/v3/auth/authenticate`` gives a token sent in the
``Authorization`` header, fetched again when the server no longer takes it:
a simple token expires after ``--auth-token-ttl`` seconds unused, 300 by
default, and a request whose token predates a change of roles is refused),
and opens streamed calls (watch) on a dedicated HTTP session each, so that
closing one stream never disturbs another call. Client exceptions are left
to the backend's boundary to translate; gateway error answers become
:class:`~discovery_etcd._errors.GatewayError`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import requests

from discovery_etcd._common import ConnectionSettings, Endpoints, fetch_version, make_http, wait_forever
from discovery_etcd._errors import GatewayError

__all__ = ["V3Client", "b64", "gateway_error", "prefix_end", "unb64"]

_log = logging.getLogger(__name__)

_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
# Refused when the auth store changed (a role granted or revoked) between a
# request's authentication and its apply; nothing was applied.
_AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"


def b64(data: bytes) -> str:
    """Bytes as the gateway's base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    """The bytes of a gateway base64 field (missing means empty)."""
    return base64.b64decode(text) if isinstance(text, str) and text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"  # every key
    end[-1] += 1
    return bytes(end)


def _stale_token(exc: GatewayError) -> bool:
    """Whether etcd refused the request's token, not the user: a new token and one more try will do."""
    return exc.code == _UNAUTHENTICATED or _AUTH_OLD_REVISION in exc.message


def gateway_error(document: object, http_status: int) -> GatewayError:
    """The error a gateway answer holds, from a unary error body or a stream's ``error`` item."""
    if isinstance(document, dict):
        inner = document.get("error")
        if isinstance(inner, dict):  # inside a stream: {"error": {"grpc_code": .., "message": ..}}
            return GatewayError(int(inner.get("grpc_code", 2)), str(inner.get("message", "")), http_status)
        return GatewayError(int(document.get("code", 2)), str(document.get("message") or inner or ""), http_status)
    return GatewayError(2, f"unexpected answer {document!r:.200}", http_status)


class V3Client:
    """Calls to etcd's v3 JSON gateway, with failover between endpoints.

    Args:
        settings: endpoints, timeout, TLS files and credentials.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.endpoints = Endpoints(settings.endpoints)
        self._http = make_http(settings)
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        """The endpoint that answered last (tried first next time)."""
        return self.endpoints.preferred

    def _headers(self, endpoint: str, http: requests.Session) -> dict[str, str]:
        if not self.settings.user:
            return {}
        with self._lock:
            token = self._tokens.get(endpoint)
        if token is None:
            answer = http.post(
                f"{endpoint}/v3/auth/authenticate",
                json={"name": self.settings.user, "password": self.settings.password},
                timeout=self.settings.timeout,
            )
            token = str(self._decode(answer).get("token", ""))
            with self._lock:
                self._tokens[endpoint] = token
        return {"Authorization": token}

    def _forget_token(self, endpoint: str) -> None:
        with self._lock:
            self._tokens.pop(endpoint, None)

    @staticmethod
    def _decode(answer: requests.Response) -> dict[str, Any]:
        try:
            document = answer.json()
        except ValueError:
            document = None
        if answer.status_code != 200 or not isinstance(document, dict):
            raise gateway_error(
                document if document is not None else {"message": answer.text[:200]}, answer.status_code
            )
        if "error" in document and "result" not in document and "header" not in document:
            raise gateway_error(document, answer.status_code)
        # A streamed call answered once (lease keep-alive) wraps its answer in "result".
        result = document.get("result", document)
        return result if isinstance(result, dict) else {}

    def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` and return the decoded answer (``timeout`` defaults to the settings').

        Endpoints are tried in order from the preferred one; a connection
        error (or, for an idempotent call, a timeout or an ``unavailable``
        answer) moves on to the next.

        Raises:
            GatewayError: etcd answered with an error.
            requests.RequestException: no endpoint could be reached (the last error).
        """

        def attempt(endpoint: str) -> dict[str, Any]:
            for retry in (False, True):
                try:
                    answer = self._http.post(
                        f"{endpoint}{path}",
                        json=body,
                        headers=self._headers(endpoint, self._http),
                        timeout=timeout or self.settings.timeout,
                    )
                    return self._decode(answer)
                except GatewayError as exc:
                    if retry or not self.settings.user or not _stale_token(exc):
                        raise
                    self._forget_token(endpoint)
            raise AssertionError("unreachable")

        def unreachable(exc: BaseException) -> bool:
            if isinstance(exc, GatewayError):
                return exc.code == _UNAVAILABLE and idempotent
            if isinstance(exc, requests.Timeout):
                return isinstance(exc, requests.ConnectTimeout) or idempotent
            return isinstance(exc, requests.ConnectionError)

        try:
            return self.endpoints.first_answer(attempt, unreachable)
        except requests.Timeout as exc:
            if not unreachable(exc):
                # A write that may have been applied is not repeated elsewhere,
                # but the endpoint that did not answer in time is not tried first again.
                self.endpoints.skip(self.endpoints.preferred)
            raise

    def open_stream(self, path: str, body: dict[str, Any]) -> tuple[requests.Session, requests.Response]:
        """Start a streamed call (a watch) on its own HTTP session; the answer's lines come as they are sent.

        Returns:
            The session and the open response; close both when done.

        Raises:
            GatewayError: etcd refused the call.
            requests.RequestException: no endpoint could be reached (the last error).
        """

        def attempt(endpoint: str) -> tuple[requests.Session, requests.Response]:
            http = make_http(self.settings)
            # A watch sent with a token the server no longer knows is refused
            # (etcd 3.4.23 cancels it at creation, "invalid auth token"; it
            # has been seen not to answer at all), so a stream always starts
            # with a fresh token. Once created, it outlives the token.
            self._forget_token(endpoint)
            try:
                # Require a leader: a member cut off from the cluster ends the
                # watch instead of leaving it silently stalled.
                headers = {"Grpc-Metadata-hasleader": "true", **self._headers(endpoint, http)}
                answer = http.post(
                    f"{endpoint}{path}", json=body, headers=headers, stream=True, timeout=self.settings.timeout
                )
            except BaseException:
                http.close()
                raise
            if answer.status_code != 200:
                try:
                    document: object = answer.json()
                except ValueError:
                    document = {"message": answer.text[:200]}
                answer.close()
                http.close()
                raise gateway_error(document, answer.status_code)
            # The answer started in time; from now on the stream may stay quiet for as long as nothing changes.
            wait_forever(answer)
            return http, answer

        # Opening a watch changes nothing on the server: a member that does
        # not answer in time is as good as unreachable.
        return self.endpoints.first_answer(
            attempt, lambda exc: isinstance(exc, requests.ConnectionError | requests.Timeout)
        )

    @staticmethod
    def lines(answer: requests.Response) -> Iterator[dict[str, Any]]:
        """The JSON items of a streamed answer, one per line, as they arrive.

        Raises:
            GatewayError: an item is an error (the stream ends with it).
            requests.RequestException: the stream broke.
            ValueError: a line is not JSON.
        """
        for line in answer.iter_lines(chunk_size=65536):
            if not line:
                continue
            document = json.loads(line)
            if not isinstance(document, dict):
                raise ValueError(f"unexpected watch item {document!r:.200}")
            if "error" in document:
                raise gateway_error(document, answer.status_code)
            result = document.get("result")
            yield result if isinstance(result, dict) else {}

    def range(self, key: bytes, range_end: bytes | None = None) -> dict[str, Any]:
        """Read a key, or every key in ``[key, range_end)``, in one linearizable read."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        return self.call("/v3/kv/range", body)

    def delete_range(self, key: bytes) -> dict[str, Any]:
        """Delete one key."""
        return self.call("/v3/kv/deleterange", {"key": b64(key)})

    def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run a transaction: ``success`` if every ``compare`` holds, else ``failure``."""
        return self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure}, timeout=timeout)

    def lease_grant(self, ttl: int) -> dict[str, Any]:
        """Grant a lease of ``ttl`` seconds (the server may raise it to its minimum)."""
        return self.call("/v3/lease/grant", {"TTL": ttl}, idempotent=False)

    def lease_keepalive(self, lease_id: int, timeout: float | None = None) -> int:
        """Renew a lease once; return its new TTL, 0 when the server no longer has it."""
        return int(self.call("/v3/lease/keepalive", {"ID": str(lease_id)}, timeout=timeout).get("TTL", 0))

    def lease_revoke(self, lease_id: int, timeout: float | None = None) -> None:
        """Revoke a lease: its keys are deleted in one revision.

        Raises:
            GatewayError: ``requested lease not found`` when it is already gone.
        """
        self.call("/v3/lease/revoke", {"ID": str(lease_id)}, timeout=timeout)

    def lease_keys(self, lease_id: int, timeout: float | None = None) -> list[bytes] | None:
        """The keys a lease holds; None when the server no longer has the lease."""
        answer = self.call("/v3/lease/timetolive", {"ID": str(lease_id), "keys": True}, timeout=timeout)
        if int(answer.get("TTL", -1)) < 0:
            return None
        return [unb64(key) for key in answer.get("keys") or ()]

    def version(self) -> str:
        """The server's version, ``"unknown"`` if no endpoint tells it."""
        return fetch_version(self._http, self.settings)

    def close(self) -> None:
        """Drop the pooled connections."""
        self._http.close()
