"""The comparison benchmark: what each backend (memory, etcd v3, etcd v2, ZooKeeper) costs, measured side by side.

A distribution of its own (``pip install ./benchmarks``) that adds
``discovery bench`` (``make bench``) to the CLI through the
``discovery.commands`` entry point, and the README's benchmark section to
``discovery readme`` through ``discovery.readme_sections``. It starts local
etcd and ZooKeeper servers, or measures existing registries given with
``--url``, and runs every workload on every backend in interleaved rounds
after a warm-up: registration throughput against the bare client library,
watch propagation latency, lookups, the dashboard in a headless browser
(first render, register → node up, page memory), burst completeness against
the naive re-watch loop, failure detection against the ttl, keep-alive cost and client memory,
resync cost, how far one process goes (the scale knee of each server backend, the cost of each
step, watcher fan-out), and optionally tooz peer membership. It writes ``report.json``,
``report.md`` and PNG plots. Where things are:

- :mod:`~discovery_bench.command` and :mod:`~discovery_bench.run`: the command and one run end to end;
- :mod:`~discovery_bench.profiles`: the sizes of ``smoke``, ``default`` and ``full``;
- :mod:`~discovery_bench.metrics`: how every figure is computed, in one place;
- :mod:`~discovery_bench.workloads`: one module per measurement;
- :mod:`~discovery_bench.harness`: targets and their traits, servers, processes, side processes, rounds, raw clients;
- :mod:`~discovery_bench.report`: results, ``report.json``, ``report.md``, plots, goals, the README section.

The command object is :data:`bench_command`; the heavy imports (matplotlib,
client libraries) happen only when it runs.
"""

from discovery_bench.command import bench_command

__all__ = ["bench_command"]
