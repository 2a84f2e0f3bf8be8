"""Run the same job on several threads released together, and time them from release to the last one done.

Concurrent registrants are threads, each with its own client connection,
started first and then released at once by one event, so the time measured is
the work alone, not thread start-up. An exception in any thread is raised in
the caller after all have finished.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


def run_together(jobs: Sequence[Callable[[], None]]) -> float:
    """Run every job on its own thread, released together; return the seconds until the last finished.

    Raises:
        BaseException: the first exception a job raised (after every job ended).
    """
    go = threading.Event()
    errors: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            go.wait()
            try:
                job()
            except BaseException as exc:  # handed to the caller below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(job), name=f"bench-job-{i}", daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed
