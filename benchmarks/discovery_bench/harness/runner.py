"""The runner: every workload on every backend, in interleaved rounds, with a progress bar.

For each workload it sets up each backend, runs the warm-up round, then the
measured rounds, each visiting every backend in turn (or all at once for a
workload declared ``concurrent``), and tears down. A round that fails on one
backend is recorded as an error for that backend and the run goes on; only
Ctrl-C stops it, after which the run's child processes are killed and the
caller stops the servers and still writes what was measured.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from discovery_bench.harness.targets import BenchTarget
from discovery_bench.report.results import Observations, ResultSet
from discovery_bench.workloads.base import Context, Workload

_log = logging.getLogger("discovery_bench")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class Runner:
    """Runs workloads over targets and files what they observe in a :class:`ResultSet`."""

    def __init__(self, ctx: Context, targets: Sequence[BenchTarget], results: ResultSet, console: Console) -> None:
        self.ctx = ctx
        self.targets = list(targets)
        self.results = results
        self.console = console
        self.timings: dict[str, float] = {}

    def total_steps(self, workloads: Sequence[Workload]) -> int:
        """How many (round, backend) steps the progress bar counts."""
        return sum((w.rounds() + int(w.warm_up())) * len(self.targets) for w in workloads)

    def run(self, workloads: Sequence[Workload]) -> None:
        """Run every workload in order; Ctrl-C propagates after the child processes are killed."""
        for workload in workloads:
            own = [m for m in workload.metrics() if m.section in ("", workload.name)]
            self.results.declare(workload.name, workload.title, workload.description, workload.params(), own)
            for name, (title, description, params) in workload.sections().items():
                mine = [m for m in workload.metrics() if m.section == name]
                self.results.declare(name, title, description, params, mine)
        try:
            with self._progress(self.total_steps(workloads)) as (describe, advance):
                for workload in workloads:
                    started = time.monotonic()
                    self._run_one(workload, describe, advance)
                    self.timings[workload.name] = round(time.monotonic() - started, 1)
        finally:
            self.ctx.close()

    @contextlib.contextmanager
    def _progress(self, total: int) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
        """A live progress bar on a terminal; one line per step elsewhere (CI logs, pipes)."""
        if not self.console.is_terminal:
            done = [0]

            def line(text: str) -> None:
                self.console.print(f"[{done[0]}/{total}] {text}", soft_wrap=True, markup=False, highlight=False)

            def count() -> None:
                done[0] += 1

            yield line, count
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console) as progress:
            task = progress.add_task("starting", total=total)
            yield (lambda text: progress.update(task, description=text)), (lambda: progress.advance(task))

    def _run_one(self, workload: Workload, describe: Callable[[str], None], advance: Callable[[], None]) -> None:
        active: list[BenchTarget] = []
        for target in self.targets:
            reason = workload.applies(target)
            if reason is not None:
                self.results.not_applicable(workload.name, target.label, reason)
                for name in workload.sections():
                    self.results.not_applicable(name, target.label, reason)
                continue
            describe(f"{workload.title}: preparing {target.label}")
            try:
                workload.setup(target)
                active.append(target)
            except Exception as exc:
                _log.debug("setup of %s on %s failed:\n%s", workload.name, target.label, traceback.format_exc())
                self.results.error(workload.name, target.label, f"setup: {_describe(exc)}", workload.metrics())
        skipped = len(self.targets) - len(active)
        try:
            first = -1 if workload.warm_up() else 0
            for round_index in range(first, workload.rounds()):
                label = "warm-up" if round_index < 0 else f"round {round_index + 1}/{workload.rounds()}"
                if workload.concurrent:
                    describe(f"{workload.title}: {label}, all backends at once")
                    self._concurrent_round(workload, active, round_index)
                    for _ in active:
                        advance()
                else:
                    for target in active:
                        describe(f"{workload.title}: {label}, {target.label}")
                        self._round(workload, target, round_index)
                        advance()
                for _ in range(skipped):
                    advance()
        finally:
            for target in active:
                describe(f"{workload.title}: cleaning up {target.label}")
                try:
                    workload.teardown(target)
                except Exception as exc:
                    self.results.error(workload.name, target.label, f"teardown: {_describe(exc)}", [])

    def _round(self, workload: Workload, target: BenchTarget, round_index: int) -> None:
        try:
            observations = workload.run(target, round_index)
        except Exception as exc:
            _log.debug("%s on %s failed:\n%s", workload.name, target.label, traceback.format_exc())
            self.results.error(workload.name, target.label, _describe(exc), workload.metrics())
            return
        if round_index >= 0:
            self.results.record(workload.name, target.label, observations, workload.metrics())

    def _concurrent_round(self, workload: Workload, targets: list[BenchTarget], round_index: int) -> None:
        outcomes: dict[str, Observations | BaseException] = {}

        def one(target: BenchTarget) -> None:
            try:
                outcomes[target.label] = workload.run(target, round_index)
            except Exception as exc:
                _log.debug("%s on %s failed:\n%s", workload.name, target.label, traceback.format_exc())
                outcomes[target.label] = exc

        threads = [threading.Thread(target=one, args=(t,), name=f"bench-{t.label}", daemon=True) for t in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for target in targets:
            outcome = outcomes.get(target.label)
            if isinstance(outcome, Observations):
                if round_index >= 0:
                    self.results.record(workload.name, target.label, outcome, workload.metrics())
            else:
                message = _describe(outcome) if outcome is not None else "no result"
                self.results.error(workload.name, target.label, message, workload.metrics())
