"""The negative control on a real etcd: the story's naive loop loses events.

A writer sets 100 keys with a ttl through python-etcd, exactly like the
original snippet, and lets them expire: 100 sets and 100 expiries. The loop
``while True: client.watch(prefix, recursive=True)`` starts every call "from
now", so it sees fewer than 200. This proves the suite's scenarios test a
real failure mode, not an imagined one.
"""

from __future__ import annotations

import threading
import uuid

import etcd

from discovery.servers import EtcdCluster
from discovery.testing.waiting import wait_until


def test_naive_python_etcd_loop_loses_events(etcd_cluster: EtcdCluster) -> None:
    host, _, port = etcd_cluster.client_urls[0].removeprefix("http://").rpartition(":")
    prefix = f"/nodes-{uuid.uuid4().hex[:8]}"
    writer = etcd.Client(host=host, port=int(port))
    watcher = etcd.Client(host=host, port=int(port))
    seen: list[str] = []
    stop = threading.Event()

    def naive_loop() -> None:
        while not stop.is_set():
            try:
                event = watcher.watch(prefix, recursive=True, timeout=0.5)
            except (etcd.EtcdWatchTimedOut, etcd.EtcdConnectionFailed, etcd.EtcdKeyNotFound):
                continue
            seen.append(f"{event.action} {event.key}")

    thread = threading.Thread(target=naive_loop, daemon=True)
    thread.start()
    for i in range(100):
        writer.write(f"{prefix}/n{i}", 1, ttl=2)

    def all_expired() -> bool:
        try:
            directory = writer.read(prefix, recursive=True)
        except etcd.EtcdKeyNotFound:
            return True
        return not [child for child in directory.children if child.key != prefix]

    wait_until(all_expired, timeout=60, message="the 100 keys to expire")
    stop.set()
    thread.join(timeout=10)
    sets = sum(1 for s in seen if s.startswith("set"))
    expiries = sum(1 for s in seen if s.startswith("expire"))
    assert sets + expiries < 200, f"the naive loop saw all 200 events ({sets} sets, {expiries} expiries)"
