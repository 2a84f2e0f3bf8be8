"""The ZooKeeper backend of discovery: ``zookeeper://h1:2181,h2:2181/root`` (alias ``zk://``).

Instances are native ephemeral znodes of the client's ZooKeeper session;
watches are complete thanks to persistent recursive watches (``addWatch``,
ZooKeeper 3.6 or newer), which kazoo lacks and
:mod:`discovery_zookeeper._persistent_watch` adds on top of its connection.
What ZooKeeper cannot do is declared in
:attr:`ZooKeeperBackend.capabilities`: it cannot tell an expiry from a delete,
return every intermediate value, list a prefix in one atomic read, resume a
watch from a past revision, or report an expiring session's deletions as one
batch. Install it with ``pip install discovery-registry-zookeeper``.
"""

from __future__ import annotations

from discovery_zookeeper._backend import MIN_WATCH_VERSION, ZooKeeperBackend, ZooKeeperSession
from discovery_zookeeper._errors import TRANSLATIONS

__all__ = ["MIN_WATCH_VERSION", "TRANSLATIONS", "ZooKeeperBackend", "ZooKeeperSession"]
