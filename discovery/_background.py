"""Background threads and user callbacks, kept apart so that neither can silently end the other.

Every listener a user hands to discovery (a registration's ``on_change``, a
session's liveness listener, later a cache's subscribers) is called through
:func:`call_listener`: an exception it raises is logged with its traceback and
goes no further, so it can never stop the keep-alive, keeper or watch thread
that called it. Every background thread is started with :func:`start_thread`:
should its body die anyway, the death is logged at ``CRITICAL`` with the
traceback and the thread's owner is told through ``on_death``, so it can
mark what the thread kept alive as lost and recover, instead of the work
silently stopping. A background retry loop reports a failure that repeats
through :class:`RateLimitedLog`: once when it starts, then at most once per
interval with the count of repeats, so an outage does not flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
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


class RateLimitedLog:
    """Log a message that repeats (a retry failing every 200 ms) once, then once per interval with a count."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, topic: str, message: str, *args: object) -> None:
        """Log at WARNING, unless ``topic`` was logged less than an interval ago."""
        self._log(logging.WARNING, topic, message, args)

    def info(self, topic: str, message: str, *args: object) -> None:
        """Log at INFO, unless ``topic`` was logged less than an interval ago."""
        self._log(logging.INFO, topic, message, args)

    def clear(self, topic: str) -> None:
        """Forget ``topic``: the failure is over; the next one is logged at once."""
        with self._lock:
            self._last.pop(topic, None)

    def _log(self, level: int, topic: str, message: str, args: tuple[object, ...]) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(topic, (float("-inf"), 0))
            if now - last < self._interval:
                self._last[topic] = (last, suppressed + 1)
                return
            self._last[topic] = (now, 0)
        if suppressed:
            message += f" (repeated {suppressed} times since last logged)"
        self._logger.log(level, message, *args)
