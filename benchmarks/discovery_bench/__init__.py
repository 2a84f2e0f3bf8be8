"""The comparison benchmark: what each backend (memory, etcd v3, etcd v2, ZooKeeper) costs, measured side by side.

``discovery bench`` (``make bench``) starts local etcd and ZooKeeper servers,
or measures existing registries given with ``--url``, and runs every
workload on every backend in interleaved rounds after a warm-up:
registration throughput against the bare client library, watch propagation
latency, burst completeness against the naive re-watch loop, failure
detection against the ttl, keep-alive cost and client memory, resync cost,
and optionally tooz peer membership. It writes ``report.json``, ``report.md``
and PNG plots; ``python -m discovery.bench.readme`` puts the headline
figures in the README. The command object is :data:`bench_command`; the
heavy imports (matplotlib, client libraries) happen only when it runs.
"""

from discovery.bench._command import bench_command

__all__ = ["bench_command"]
