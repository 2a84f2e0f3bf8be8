"""Keys relative to the registry's root, and the znode paths they live at.

Key ``buzz/buzzadmin/api/host-1`` under root ``/services`` is the znode
``/services/buzz/buzzadmin/api/host-1``; with no root, keys sit directly
below ``/``, and ZooKeeper's own ``/zookeeper`` tree is then never taken for
keys. The prefixes the core passes are ``""`` or end with ``/``; a prefix's
znode is the one its keys are children (or descendants) of.
"""

from __future__ import annotations

__all__ = ["Namespace", "join", "parent"]

_SYSTEM_TREE = "/zookeeper"


def join(parent_path: str, child: str) -> str:
    """The path of ``child`` below ``parent_path`` (which may be ``/``)."""
    return f"{parent_path.rstrip('/')}/{child}"


def parent(path: str) -> str:
    """The parent of a path; ``/`` for a top-level node and for ``/`` itself."""
    return path.rsplit("/", 1)[0] or "/"


class Namespace:
    """Maps keys to znode paths below one root.

    Args:
        root: the registry's root as the URL gives it (``/services``, or ``""`` for none).
    """

    def __init__(self, root: str) -> None:
        stripped = root.strip("/")
        self.root = f"/{stripped}" if stripped else "/"

    def path(self, key: str) -> str:
        """The znode path of a key (``""`` is the root itself)."""
        key = key.strip("/")
        return join(self.root, key) if key else self.root

    def base(self, prefix: str) -> str:
        """The znode below which every key under ``prefix`` lives."""
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
