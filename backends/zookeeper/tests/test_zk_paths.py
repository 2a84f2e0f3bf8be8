"""Keys and znode paths below a root (``discovery_zookeeper._paths``)."""

from __future__ import annotations

from discovery_zookeeper._paths import Namespace, join, parent


def test_keys_live_below_the_root() -> None:
    namespace = Namespace("/services")
    assert namespace.path("buzz/buzzadmin/api/host-1") == "/services/buzz/buzzadmin/api/host-1"
    assert namespace.base("") == "/services"
    assert namespace.base("buzz/") == "/services/buzz"
    assert namespace.key("/services/buzz/api/host-1") == "buzz/api/host-1"
    assert namespace.key("/services") is None
    assert namespace.key("/servicesx/a") is None
    assert namespace.key("/other/a") is None


def test_without_a_root_zookeepers_own_tree_is_not_a_key() -> None:
    namespace = Namespace("")
    assert namespace.root == "/"
    assert namespace.path("nodes/n0") == "/nodes/n0"
    assert namespace.base("") == "/"
    assert namespace.key("/nodes/n0") == "nodes/n0"
    assert namespace.key("/zookeeper") is None
    assert namespace.key("/zookeeper/config") is None
    assert namespace.key("/zookeeperish/a") == "zookeeperish/a"
    assert namespace.key("/") is None


def test_join_and_parent() -> None:
    assert join("/", "a") == "/a"
    assert join("/a", "b") == "/a/b"
    assert parent("/a/b") == "/a"
    assert parent("/a") == "/"
    assert parent("/") == "/"
