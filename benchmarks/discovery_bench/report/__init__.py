"""The report: what the rounds observed, turned into ``report.json`` and everything rendered from it.

The results model (:mod:`~discovery_bench.report.results`) gathers the
rounds into ``report.json`` (:mod:`~discovery_bench.report.document`); from
that file alone come ``report.md`` (:mod:`~discovery_bench.report.markdown`),
the plots (:mod:`~discovery_bench.report.plots`), the terminal summary
(:mod:`~discovery_bench.report.summary`) and the README section
(:mod:`~discovery_bench.report.readme`), sharing number formatting
(:mod:`~discovery_bench.report.format`), the headline
(:mod:`~discovery_bench.report.headline`), the goals
(:mod:`~discovery_bench.report.goals`) and the parity table
(:mod:`~discovery_bench.report.parity`).
"""
