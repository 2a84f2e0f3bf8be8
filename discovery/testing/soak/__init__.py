"""The randomized chaos soak: the no-lost-event promise under faults nobody scripted (``discovery soak``).

Traffic (:mod:`.traffic`, writer and registrant processes, logging to
:mod:`.records`), consumers
(:mod:`.consumers`), faults (:mod:`.schedule`) and the run itself
(:mod:`.runner`) are separate layers; what they record is judged by the
history checker, :mod:`discovery.testing.history`, and written out by
:mod:`.report`. :mod:`.controls` holds the deliberately faulty backends that
prove the checker catches each breach.
"""

from __future__ import annotations

from discovery.testing.soak.report import markdown_table, write_report
from discovery.testing.soak.runner import BACKENDS, PhaseResult, SoakConfig, run_soak

__all__ = ["BACKENDS", "PhaseResult", "SoakConfig", "markdown_table", "run_soak", "write_report"]
