"""Tiny JSON-over-HTTP helpers for talking to local etcd members.

The standard library is enough for health, status and compaction calls, and it
keeps the core free of an HTTP dependency. Proxies from the environment are
ignored on purpose: these requests only ever go to 127.0.0.1, and an
``http_proxy`` variable must not send them elsewhere.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tls_opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))


class HttpError(Exception):
    """The request failed: connection refused, timeout, bad status or a non-JSON body.

    Attributes:
        status: the HTTP status when the server answered, else None.
        body: the decoded JSON body when the server answered with one, else None.
    """

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


def request_json(url: str, payload: Any = None, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> Any:
    """GET ``url`` (or POST ``payload`` as JSON) and decode the JSON answer.

    Args:
        url: the full URL.
        payload: the JSON body to POST; None means GET.
        timeout: socket timeout in seconds.
        context: the SSL context of an ``https`` URL (CA, client certificate); the default one when None.

    Returns:
        The decoded JSON document.

    Raises:
        HttpError: anything went wrong; an error status keeps its decoded body.
    """
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        opener = _opener if context is None else _tls_opener(context)
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        raise HttpError(f"{url}: HTTP {exc.code}: {raw[:500].decode('utf-8', 'replace')}", exc.code, body) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise HttpError(f"{url}: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise HttpError(f"{url}: not JSON: {raw[:200]!r}") from exc
