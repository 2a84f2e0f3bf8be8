"""How instances and definitions are laid out as keys and values (the README's key layout).

An instance lives at ``<service path>/<instance id>`` below the root, its
value a JSON object (``address``, ``port``, ``meta``); which session holds it
is the backend's business (a lease, an ephemeral node, or, on etcd v2, a field
the backend adds and removes itself). Reading
is lenient: a value that is not a JSON object is still an instance, with
``meta={"raw": <text>}``, so keys written by ``etcdctl`` or ``zkCli.sh`` show
up; a key that cannot be an instance (one segment, a reserved ``_`` segment
in the service path, an invalid name) is ignored, never fatal. A service
definition lives at ``<service path>/_definition``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from discovery._validation import check_segment
from discovery.errors import InvalidName
from discovery.models import Instance

DEFINITION = "_definition"


def instance_key(service: str, instance_id: str) -> str:
    """The key of an instance below the root."""
    return f"{service}/{instance_id}"


def definition_key(service: str) -> str:
    """The key of a service definition below the root."""
    return f"{service}/{DEFINITION}"


def key_prefix(prefix: str) -> str:
    """The key prefix that covers a service prefix and everything below it."""
    return f"{prefix}/" if prefix else ""


def encode_instance(address: str | None, port: int | None, meta: dict[str, Any]) -> bytes:
    """The stored JSON value of an instance."""
    document = {"address": address, "port": port, "meta": meta}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def encode_definition(min_instances: int) -> bytes:
    """The stored JSON value of a service definition."""
    return json.dumps({"min_instances": min_instances}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ParsedKey:
    """What a key below the root stands for.

    Attributes:
        service: the service path.
        name: the instance id, or ``_definition``.
    """

    service: str
    name: str

    @property
    def is_definition(self) -> bool:
        """Whether the key holds a service definition."""
        return self.name == DEFINITION


def parse_key(key: str) -> ParsedKey | None:
    """Split a key into service and name; None if it is neither instance nor definition."""
    service, _, name = key.rpartition("/")
    if not service:
        return None
    try:
        for segment in service.split("/"):
            check_segment("service", segment)
        if name != DEFINITION:
            check_segment("instance_id", name)
    except InvalidName:
        return None
    return ParsedKey(service, name)


def decode_instance(service: str, instance_id: str, value: bytes | None, revision: int) -> Instance:
    """Read an instance from its stored value (None: existed, value unknown); never raises."""
    if value is None:
        return Instance(service, instance_id, None, None, MappingProxyType({}), revision)
    text = value.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    if "\\u" in text and not _is_text(document):
        # A JSON escape of a lone surrogate (from another tool) would make
        # every consumer that prints or encodes the instance fail.
        document = _as_text(document)
    if not isinstance(document, dict):
        return Instance(service, instance_id, None, None, MappingProxyType({"raw": text}), revision)
    address = document.get("address")
    port = document.get("port")
    meta = document.get("meta")
    if not isinstance(meta, dict):
        meta = {} if meta is None else {"raw": meta}
    return Instance(
        service,
        instance_id,
        address if isinstance(address, str) else None,
        port if isinstance(port, int) and not isinstance(port, bool) else None,
        MappingProxyType(meta),
        revision,
    )


def _is_text(document: object) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False
    return True


def _as_text(document: object) -> object:
    """The document with every lone surrogate replaced by U+FFFD."""
    encoded = json.dumps(document, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    return json.loads(encoded.decode("utf-8", errors="replace"))


def decode_min_instances(value: bytes) -> int:
    """Read a definition's minimum; a corrupt definition counts as a minimum of 1."""
    try:
        document = json.loads(value)
        minimum = document["min_instances"]
    except (ValueError, TypeError, KeyError):
        return 1
    return minimum if isinstance(minimum, int) and not isinstance(minimum, bool) and minimum >= 0 else 1
