"""The monitoring view's rules, on the pure tree builder."""

from discovery._status import build_status
from discovery.models import Health


def test_empty_registry_is_up() -> None:
    tree = build_status("", {}, {})
    assert (tree.health, tree.reason, tree.children) == (Health.UP, "empty", ())


def test_undefined_service_with_instances_is_up() -> None:
    tree = build_status("", {"a/b": 1}, {})
    b = tree.find("a/b")
    assert b is not None and (b.health, b.reason, b.defined) == (Health.UP, "ok", False)


def test_min_zero_with_no_instances_is_up() -> None:
    assert build_status("a", {}, {"a": 0}).health is Health.UP


def test_worst_of_subtree_and_parent_down() -> None:
    tree = build_status(
        "",
        {"p/s/api": 1, "p/s/web": 3, "q": 2},
        {"p/s/api": 2, "p/s": 1, "p/s/web": 1},
    )
    p = tree.find("p")
    assert p is not None and (p.health, p.reason) == (Health.DOWN, "subtree")
    s = tree.find("p/s")
    assert s is not None and (s.health, s.reason) == (Health.DOWN, "no-instances")
    web = tree.find("p/s/web")
    assert web is not None and (web.health, web.reason, web.instances) == (Health.DOWN, "parent-down", 3)
    q = tree.find("q")
    assert q is not None and q.health is Health.UP
    assert tree.health is Health.DOWN
    assert [n.path for n in tree.walk()] == ["", "p", "p/s", "p/s/api", "p/s/web", "q"]


def test_view_below_a_down_ancestor_is_parent_down() -> None:
    node = build_status("p/s/web", {"p/s/web": 3}, {"p": 1})
    assert (node.health, node.reason) == (Health.DOWN, "parent-down")


def test_unknown_prefix_is_down() -> None:
    node = build_status("nothing", {"other": 1}, {})
    assert (node.health, node.reason) == (Health.DOWN, "no-instances")
