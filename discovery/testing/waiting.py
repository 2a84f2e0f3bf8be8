"""Waiting for a condition with a deadline, the only way tests here wait.

A fixed ``sleep`` is either too short on a loaded machine (flaky) or too long
everywhere else (slow); :func:`wait_until` polls a predicate until it holds
or the deadline passes, and then fails with a message that says what never
happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.05,
    message: str = "condition not met",
    *,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Args:
        predicate: the condition; called at least once.
        timeout: seconds before giving up.
        interval: seconds between two calls.
        message: what the assertion error says when the condition never held.
        ignore: exception types that count as "not yet" instead of propagating;
            the last one is chained to the timeout error.

    Returns:
        The first truthy value ``predicate`` returned.

    Raises:
        AssertionError: the deadline passed; the message names ``message`` and the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout:g} s)") from last_error
        time.sleep(interval)
