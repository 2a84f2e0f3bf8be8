"""Background threads and user callbacks, kept apart so that neither can silently end the other.

Every listener a user hands to discovery (a registration's ``on_change``, a
session's liveness listener, later a cache's subscribers) is called through
:func:`call_listener`: an exception it raises is logged with its traceback and
goes no further, so it can never stop the keep-alive, keeper or watch thread
that called it. Every background thread is started with :func:`start_thread`:
should its body die anyway, the death is logged at ``CRITICAL`` with the
traceback and the thread's owner is told through ``on_death``, so it can
mark what the thread kept alive as lost and recover, instead of the work
silently stopping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_log = logging.getLogger("discovery.background")


def call_listener(what: str, listener: Callable[..., object], *args: object) -> None:
    """Call a user's ``listener(*args)``; an exception it raises is logged with its traceback, never raised."""
    try:
        listener(*args)
    except Exception:
        _log.exception("%s: listener %r raised; ignored, the background work goes on", what, listener)


def start_thread(
    name: str, target: Callable[[], None], on_death: Callable[[BaseException], None] | None = None
) -> threading.Thread:
    """Start ``target`` in a daemon thread whose unexpected death is reported, not silent.

    Args:
        name: the thread's name, shown in logs.
        target: the thread's body; returning normally is a clean end.
        on_death: called with the exception if ``target`` raises; it runs in
            the dying thread and is itself guarded.

    Returns:
        The started thread.
    """

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            _log.critical("background thread %s died", name, exc_info=True)
            if on_death is not None:
                call_listener(f"thread {name}", on_death, exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
