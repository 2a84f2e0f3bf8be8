"""What every workload is: a class the runner drives round by round across the backends.

The runner calls :meth:`Workload.setup` once per backend, then the warm-up
round (not recorded) and the measured rounds, each round visiting every
backend in turn (round 1: memory, etcd, etcd2, zookeeper; round 2: ...), so
drift on the machine spreads over all backends alike, then
:meth:`Workload.teardown`. A workload whose measurement is dominated by the
server's own clock (expiry after a ttl) may declare ``concurrent = True``: a
round then runs on every backend at once (a workload may also decide per
profile, setting it in ``__init__``). :class:`Context` carries what the
workloads share: the profile, the run's naming, its child processes and the
populations some workloads build on.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from discovery_bench.harness.procs import Children
from discovery_bench.harness.targets import BenchTarget, Naming
from discovery_bench.metrics import Metric
from discovery_bench.profiles import Profile
from discovery_bench.report.results import Observations


@dataclass
class Context:
    """What the workloads of one run share.

    Attributes:
        profile: the sizes of this run.
        naming: the run's service paths.
        children: every child process of the run.
        server_pids: per server program (``"etcd"``, ``"zookeeper"``), the pids of the servers
            the run started; empty for registries given with ``--url``, whose processes it cannot see.
    """

    profile: Profile
    naming: Naming
    children: Children = field(default_factory=Children)
    server_pids: dict[str, list[int]] = field(default_factory=dict)

    def close(self) -> None:
        """Kill every child process still running."""
        self.children.kill_all()


class Workload(abc.ABC):
    """One measurement, run on every backend in interleaved rounds."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    concurrent: bool = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.profile = ctx.profile

    @abc.abstractmethod
    def metrics(self) -> list[Metric]:
        """The metrics this workload reports (a metric may file itself under another section)."""

    def sections(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """Other report sections this workload's metrics go to: name -> (title, description, parameters)."""
        return {}

    def params(self) -> dict[str, Any]:
        """The parameters shown with the results."""
        return {}

    def rounds(self) -> int:
        """How many measured rounds."""
        return 1

    def warm_up(self) -> bool:
        """Whether an unrecorded round runs first."""
        return False

    def applies(self, target: BenchTarget) -> str | None:
        """None when the workload runs on ``target``; else why it does not apply."""
        return None

    def setup(self, target: BenchTarget) -> None:  # noqa: B027 - optional hook, empty by default
        """Prepare ``target`` before the first round."""

    @abc.abstractmethod
    def run(self, target: BenchTarget, round_index: int) -> Observations:
        """Run one round on ``target``; ``round_index`` is -1 for the warm-up."""

    def teardown(self, target: BenchTarget) -> None:  # noqa: B027 - optional hook, empty by default
        """Release what :meth:`setup` and the rounds left on ``target``."""
