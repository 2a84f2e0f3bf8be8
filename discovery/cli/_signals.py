"""How long-running commands stop: SIGINT (Ctrl-C), SIGTERM and SIGHUP all mean "clean up and exit 0".

Inside :func:`until_stopped`, SIGTERM and SIGHUP raise the same
``KeyboardInterrupt`` that Ctrl-C raises, and the block ends quietly; from
then on the three signals are ignored for the rest of the process, so an
impatient second Ctrl-C cannot cut short the deregistration that follows and
leave an instance behind until its ttl runs out.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def ignore_stop_signals() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP from now on (the command is cleaning up)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def until_stopped() -> Iterator[None]:
    """Run the block until SIGINT, SIGTERM or SIGHUP, which end it without an error.

    Whatever way the block ends, the three signals are ignored afterwards
    (see :func:`ignore_stop_signals`). Must be used from the main thread.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        ignore_stop_signals()
