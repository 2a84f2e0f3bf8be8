"""The monitoring view: a tree of service paths, each up, degraded or down.

A defined service (``Registry.define``) is up with at least
``min_instances`` live instances, degraded below that but above zero, down
at zero. A service with instances but no definition counts as a minimum of
one. A parent shows the worst of its subtree (reason ``subtree``); every
descendant of a down defined service is down with reason ``parent-down``,
because the lower level depends on the upper one.
"""

from __future__ import annotations

from collections.abc import Mapping

from discovery.models import Health, StatusNode


def _own(count: int, minimum: int | None) -> tuple[Health, str] | None:
    if minimum is None:
        return (Health.UP, "ok") if count else None
    if count >= minimum:
        return Health.UP, "ok"
    if count > 0:
        return Health.DEGRADED, "below-minimum"
    return Health.DOWN, "no-instances"


def build_status(prefix: str, counts: Mapping[str, int], definitions: Mapping[str, int]) -> StatusNode:
    """Build the status tree rooted at ``prefix`` (``""`` for everything).

    Args:
        prefix: the service path at the top of the view.
        counts: live instances per service path.
        definitions: ``min_instances`` per defined service path; ancestors
            of ``prefix`` count for ``parent-down``.
    """
    paths = {p for p in (*counts, *definitions) if p == prefix or p.startswith(prefix + "/") or not prefix}
    children: dict[str, set[str]] = {}
    for path in paths:
        segments = path.split("/")
        top = len(prefix.split("/")) if prefix else 0
        for depth in range(top, len(segments)):
            parent = "/".join(segments[:depth])
            children.setdefault(parent, set()).add("/".join(segments[: depth + 1]))

    def ancestor_down(path: str) -> bool:
        segments = path.split("/")
        for depth in range(1, len(segments)):
            ancestor = "/".join(segments[:depth])
            if ancestor in definitions and _own(counts.get(ancestor, 0), definitions[ancestor]) == (
                Health.DOWN,
                "no-instances",
            ):
                return True
        return False

    def node(path: str, parent_down: bool) -> StatusNode:
        count = counts.get(path, 0)
        minimum = definitions.get(path)
        own = _own(count, minimum)
        if parent_down:
            own = (Health.DOWN, "parent-down")
        below_down = parent_down or (own == (Health.DOWN, "no-instances") and minimum is not None)
        kids = tuple(node(child, below_down) for child in sorted(children.get(path, ())))
        worst_child = max((k.health for k in kids), key=lambda h: h.rank, default=None)
        if own is None:
            health, reason = (worst_child, "subtree") if worst_child else (Health.DOWN, "no-instances")
        elif worst_child is not None and worst_child.rank > own[0].rank:
            health, reason = worst_child, "subtree"
        else:
            health, reason = own
        if not path and own is None and not kids:
            health, reason = Health.UP, "empty"
        return StatusNode(path.rsplit("/", 1)[-1], path, health, reason, count, minimum, kids)

    return node(prefix, bool(prefix) and ancestor_down(prefix))
