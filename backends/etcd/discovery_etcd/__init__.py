"""etcd backends for discovery: ``etcd://`` (the v3 API) and ``etcd2://`` (the v2 API).

:class:`EtcdBackend` talks to etcd's v3 JSON gateway with a small client of
its own (leases, transactions, watches that report compaction);
:class:`Etcd2Backend` uses python-etcd for the v2 keys API (TTL keys
refreshed with ``refresh=true``, a :class:`RefreshCapacityWarning` when a
session holds more keys than it can refresh in time, and streamed watches
that report the 1000-event history window). Both are registered as entry points in the
``discovery.backends`` group, so ``discovery.connect("etcd://127.0.0.1:2379/services")``
finds them once this distribution is installed.
"""

from discovery_etcd._v2 import Etcd2Backend
from discovery_etcd._v2_session import RefreshCapacityWarning
from discovery_etcd._v3 import EtcdBackend

__all__ = ["Etcd2Backend", "EtcdBackend", "RefreshCapacityWarning"]
