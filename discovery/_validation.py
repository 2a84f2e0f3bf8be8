"""Input rules, checked before anything is written.

Every public call validates its arguments here first, so a rejected call
never touches the store. Each rule raises a specific
:class:`~discovery.errors.InvalidInput` subclass naming the field, the value
and the reason. Beyond the rules every backend shares, :func:`check_fits`
holds a name to the limits its backend declares (characters the server
refuses, the key's size as the server measures it), so a name the server
would refuse is refused here, with the limit named, not reported later as
an outage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from discovery.errors import InvalidMeta, InvalidName, InvalidValue, shown

if TYPE_CHECKING:
    from discovery.backend import Backend

MAX_SEGMENT_LENGTH = 128
MAX_DEPTH = 16
MAX_ADDRESS_LENGTH = 255
MIN_TTL = 0.1
MAX_TTL = 86_400.0
DEFAULT_META_LIMIT = 64 * 1024
VALUE_OVERHEAD = 1024
"""Bytes of a stored instance beyond its meta (address, port, field names, a backend's owner field), at most."""
MAX_META_DEPTH = 32
MAX_REVISION = 2**63 - 1
MAX_WEIGHT = 1_000_000
"""The largest ``meta["weight"]``: weights are relative, and a bound keeps a provider's sums finite."""
_INT_LIMIT = 2**63
_PUNCTUATION = frozenset("._:@+=-~")


def check_segment(field: str, value: str) -> None:
    """Check one path segment or instance id.

    Raises:
        InvalidName: empty, too long, ``.``/``..``, a ``/``, a control or
            space character, a character outside letters, digits and
            ``._:@+=-~``, or a leading ``_`` (reserved for the registry).
    """
    if not isinstance(value, str):
        raise InvalidName(field, value, "must be a string")
    if not value:
        raise InvalidName(field, value, "must not be empty")
    if len(value) > MAX_SEGMENT_LENGTH:
        raise InvalidName(field, value, f"longer than {MAX_SEGMENT_LENGTH} characters")
    if "/" in value:
        raise InvalidName(field, value, "must not contain '/'")
    if value in (".", ".."):
        raise InvalidName(field, value, "must not be '.' or '..'")
    for char in value:
        if not char.isprintable() or char.isspace():
            raise InvalidName(field, value, f"contains control or space character {char!r}")
        if not (char.isalnum() or char in _PUNCTUATION or char == "_"):
            raise InvalidName(field, value, f"contains {char!r}; allowed: letters, digits and ._:@+=-~")
    if value.startswith("_"):
        raise InvalidName(field, value, "names starting with '_' are reserved for the registry")


def check_service(value: str, field: str = "service") -> str:
    """Check a service path like ``buzz/buzzadmin/api`` and return it.

    Raises:
        InvalidName: a bad segment, an empty or leading/trailing/double ``/``,
            or more than 16 segments.
    """
    if not isinstance(value, str):
        raise InvalidName(field, value, "must be a string")
    if not value:
        raise InvalidName(field, value, "must not be empty")
    segments = value.split("/")
    if len(segments) > MAX_DEPTH:
        raise InvalidName(field, value, f"deeper than {MAX_DEPTH} segments")
    for segment in segments:
        if not segment:
            raise InvalidName(field, value, "empty segment (leading, trailing or double '/')")
        try:
            check_segment(field, segment)
        except InvalidName as exc:
            raise InvalidName(field, value, f"segment {segment!r}: {exc.reason}") from None
    return value


def check_prefix(value: str) -> str:
    """Check a watch/status prefix: ``""`` (everything) or a service path; surrounding ``/`` are dropped.

    Raises:
        InvalidName: as for a service path.
    """
    if not isinstance(value, str):
        raise InvalidName("prefix", value, "must be a string")
    stripped = value.strip("/")
    return check_service(stripped, "prefix") if stripped else ""


def check_instance_id(value: str) -> str:
    """Check an instance id and return it.

    Raises:
        InvalidName: as for a path segment.
    """
    check_segment("instance_id", value)
    return value


def check_address(value: str | None) -> str | None:
    """Check an address (host name or IP) and return it.

    Raises:
        InvalidValue: not a string, empty, too long, or with spaces or control characters.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidValue("address", value, "must be a non-empty string")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidValue("address", value, f"longer than {MAX_ADDRESS_LENGTH} characters")
    if any(not c.isprintable() or c.isspace() for c in value):
        raise InvalidValue("address", value, "contains control or space characters")
    return value


def check_port(value: int | None) -> int | None:
    """Check a TCP port and return it.

    Raises:
        InvalidValue: not an integer in 1..65535.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue("port", value, "must be an integer")
    if not 1 <= value <= 65535:
        raise InvalidValue("port", value, "must be in 1..65535")
    return value


def check_ttl(value: float, minimum: float = MIN_TTL) -> float:
    """Check a ttl in seconds and return it as a float.

    Raises:
        InvalidValue: not a finite number in ``minimum``..86400.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue("ttl", value, "must be a finite number of seconds")
    low = max(minimum, MIN_TTL)
    if not low <= value <= MAX_TTL:
        raise InvalidValue("ttl", value, f"must be in {low:g}..{MAX_TTL:g} seconds for this backend")
    return float(value)


def check_min_instances(value: int) -> int:
    """Check a service definition's minimum and return it.

    Raises:
        InvalidValue: not an integer in 0..1000000.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise InvalidValue("min_instances", value, "must be an integer in 0..1000000")
    return value


def _json_problem(value: object) -> str | None:
    """Why ``value`` is not plain, portable JSON, or None; iterative, so any depth is safe to inspect."""
    stack: list[tuple[object, int, str]] = [(value, 0, "meta")]
    while stack:
        item, depth, path = stack.pop()
        if depth > MAX_META_DEPTH:
            return f"nested deeper than {MAX_META_DEPTH} levels"
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if not _is_text(item):
                return f"{path} holds a lone surrogate, which is not text"
        elif isinstance(item, int):
            if not -_INT_LIMIT <= item < _INT_LIMIT:
                return f"{path} holds an integer beyond 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path} holds {item}, which JSON cannot carry"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{path} has a key that is not a string ({type(key).__name__})"
                if not _is_text(key):
                    return f"{path} has a key with a lone surrogate"
                stack.append((child, depth + 1, f"{path}.{key[:40]}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1, f"{path}[{index}]") for index, child in enumerate(item))
        else:
            return f"{path} holds a {type(item).__name__}, which is not JSON"
    return None


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_meta(value: Mapping[str, Any] | None, limit: int) -> dict[str, Any]:
    """Check metadata and return a plain copy.

    Raises:
        InvalidMeta: not a mapping with string keys; not plain JSON (nested
            deeper than 32 levels, an integer beyond 64 bits, NaN or infinity,
            a lone surrogate, a value of another type); larger than
            ``limit`` bytes encoded; or a well-known key that breaks its
            rule (see :func:`check_well_known_meta`), naming the key.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidMeta("meta", value, "must be a mapping of strings to JSON values")
    problem = _json_problem(value)
    if problem is not None:
        raise InvalidMeta("meta", value, problem)
    encoded = json.dumps(dict(value), separators=(",", ":"))
    size = len(encoded.encode())
    if size > limit:
        raise InvalidMeta("meta", value, f"{size} bytes encoded, above the limit of {limit}")
    result: dict[str, Any] = json.loads(encoded)
    check_well_known_meta(result)
    return result


def check_well_known_meta(meta: Mapping[str, Any]) -> None:
    """Check the meta keys providers read (:mod:`discovery.provider`); other keys are free.

    Rules: ``weight`` is a number (not a bool) above 0 and at most
    :data:`MAX_WEIGHT`; ``zone`` is a name, with the characters of an
    instance id (letters, digits, ``._:@+=-~``, at most 128, no leading
    ``_``); ``tags`` is a list of distinct names, each as a zone.

    Raises:
        InvalidMeta: naming the key as its field (``meta.weight``,
            ``meta.zone``, ``meta.tags``) and the value.
    """
    if "weight" in meta:
        weight = meta["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            kind = "a bool" if isinstance(weight, bool) else type(weight).__name__
            raise InvalidMeta("meta.weight", weight, f"must be a positive finite number, not {kind}")
        if not 0 < weight <= MAX_WEIGHT:
            raise InvalidMeta("meta.weight", weight, f"must be above 0 and at most {MAX_WEIGHT}")
    if "zone" in meta:
        _check_meta_name("meta.zone", meta["zone"], meta["zone"], "")
    if "tags" in meta:
        tags = meta["tags"]
        if not isinstance(tags, list | tuple):
            raise InvalidMeta("meta.tags", tags, "must be a list of names")
        for tag in tags:
            _check_meta_name("meta.tags", tags, tag, f"tag {shown(tag)}: ")
        if len(set(tags)) != len(tags):
            raise InvalidMeta("meta.tags", tags, "a tag appears twice")


def _check_meta_name(field: str, value: object, name: object, what: str) -> None:
    """Hold ``name`` (a zone, a tag) to the rules of an instance id; refuse ``value`` with :class:`InvalidMeta`."""
    try:
        check_segment(field, name)  # type: ignore[arg-type]  # check_segment refuses what is not a string
    except InvalidName as exc:
        raise InvalidMeta(field, value, what + exc.reason) from None


def check_fits(field: str, value: str, key: str, backend: Backend) -> None:
    """Check that a name passes the backend's own limits, for the key it ends up in.

    Args:
        field: the argument's name, for the error.
        value: the argument as given.
        key: the key (or key prefix) the argument becomes, relative to the root.
        backend: the backend whose limits apply.

    Raises:
        InvalidName: a character the server refuses in names, or a key larger
            than the server takes.
    """
    for low, high in backend.refused_characters:
        for char in value:
            if low <= ord(char) <= high:
                reason = f"contains U+{ord(char):04X}; {backend.name} refuses U+{low:04X}..U+{high:04X} in names"
                raise InvalidName(field, value, reason)
    size = backend.key_size(key)
    if size > backend.max_key_bytes:
        reason = f"its key is {size} bytes as {backend.name} sends it, above its limit of {backend.max_key_bytes}"
        raise InvalidName(field, value, reason)
