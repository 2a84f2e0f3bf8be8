"""Keys relative to the registry's root, the znode paths they live at, and the characters ZooKeeper refuses in them.

Key ``buzz/buzzadmin/api/host-1`` under root ``/services`` is the znode
``/services/buzz/buzzadmin/api/host-1``; with no root, keys sit directly
below ``/``, and ZooKeeper's own ``/zookeeper`` tree is then never taken for
keys. The prefixes the core passes are ``""`` or end with ``/``; a prefix's
znode is the one its keys are children (or descendants) of. A path holding a
character ZooKeeper refuses (:data:`REFUSED_CHARACTERS`) is refused here,
before kazoo sees it: the server would only answer ``BadArguments``, and a
lone surrogate cannot even be encoded, which kills kazoo's connection thread
and leaves the client dead for good.
"""

from __future__ import annotations

import re

from discovery.errors import InvalidName

__all__ = ["REFUSED_CHARACTERS", "Namespace", "join", "parent"]

_SYSTEM_TREE = "/zookeeper"

REFUSED_CHARACTERS: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0xD800, 0xF8FF),
    (0xFFF0, 0x10FFFF),
)
"""Inclusive code-point ranges ZooKeeper refuses in a path (``PathUtils.validatePath``).

Control characters, surrogates and the private use area, the specials block,
and every character outside the Basic Multilingual Plane: Java holds those as
surrogate pairs, which the server refuses. Checked against ZooKeeper 3.8.0 by
creating a znode with each code point of the BMP and samples of the others.
"""

_REFUSED = re.compile("[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in REFUSED_CHARACTERS) + "]")


def join(parent_path: str, child: str) -> str:
    """The path of ``child`` below ``parent_path`` (which may be ``/``)."""
    return f"{parent_path.rstrip('/')}/{child}"


def parent(path: str) -> str:
    """The parent of a path; ``/`` for a top-level node and for ``/`` itself."""
    return path.rsplit("/", 1)[0] or "/"


def check_path(field: str, value: str, path: str) -> None:
    """Refuse a path holding a character ZooKeeper refuses.

    Args:
        field: what ``value`` is, for the error (``key``, ``root``).
        value: the key or root as given.
        path: its znode path.

    Raises:
        InvalidName: the path holds a refused character.
    """
    match = _REFUSED.search(path)
    if match is not None:
        raise InvalidName(field, value, f"ZooKeeper refuses the character U+{ord(match.group()):04X} in a path")


class Namespace:
    """Maps keys to znode paths below one root.

    Args:
        root: the registry's root as the URL gives it (``/services``, or ``""`` for none).

    Raises:
        InvalidName: the root holds a character ZooKeeper refuses.
    """

    def __init__(self, root: str) -> None:
        stripped = root.strip("/")
        self.root = f"/{stripped}" if stripped else "/"
        check_path("root", root, self.root)

    def path(self, key: str) -> str:
        """The znode path of a key (``""`` is the root itself).

        Raises:
            InvalidName: the key holds a character ZooKeeper refuses.
        """
        key = key.strip("/")
        path = join(self.root, key) if key else self.root
        check_path("key", key, path)
        return path

    def base(self, prefix: str) -> str:
        """The znode below which every key under ``prefix`` lives.

        Raises:
            InvalidName: the prefix holds a character ZooKeeper refuses.
        """
        return self.path(prefix)

    def key(self, path: str) -> str | None:
        """The key of a znode path; None for the root itself, paths outside it and ZooKeeper's own tree."""
        if self.root == "/":
            if path == "/" or path == _SYSTEM_TREE or path.startswith(_SYSTEM_TREE + "/"):
                return None
            return path[1:]
        if not path.startswith(self.root + "/"):
            return None
        return path[len(self.root) + 1 :]

    def ancestors(self, path: str) -> list[str]:
        """The znodes strictly between the root and ``path``, nearest the root first."""
        found: list[str] = []
        current = parent(path)
        while current != self.root and self.key(current) is not None:
            found.append(current)
            current = parent(current)
        found.reverse()
        return found
