"""The harness: what runs the workloads and what they run against, independent of any one measurement.

Targets and their backend traits (:mod:`~discovery_bench.harness.targets`),
the local servers (:mod:`~discovery_bench.harness.servers`), child processes,
the population holder and the processes that run one backend's side of a
workload (:mod:`~discovery_bench.harness.procs`,
:mod:`~discovery_bench.harness.holder`, :mod:`~discovery_bench.harness.side`), the interleaved rounds
(:mod:`~discovery_bench.harness.runner`), threads released together
(:mod:`~discovery_bench.harness.threads`), watch event collection
(:mod:`~discovery_bench.harness.collector`), server counters and CPU
(:mod:`~discovery_bench.harness.counters`), bare-client baselines
(:mod:`~discovery_bench.harness.raw`) and the machine's description
(:mod:`~discovery_bench.harness.machine`).
"""
