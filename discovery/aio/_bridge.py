"""The bridge from coroutines to the blocking core: calls in worker threads, and opens that can be awaited or entered.

Every blocking call of the sync API runs in the event loop's default executor
through :func:`call`. The call is shielded: cancelling the awaiting task
does not stop a call that may already be talking to the server, it only
drops the result; a call that *makes* something (a registry, a registration,
a watch, a cache) is given a ``release`` that undoes it once it is made, so
a cancelled open never leaves a registered instance or an open stream
behind. :class:`Opening` lets one such open be awaited (``x = await ...``)
or entered (``async with ... as x``), as aiohttp's requests can be.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

_log = logging.getLogger("discovery.aio")
_T = TypeVar("_T")


class AsyncClosable(Protocol):
    """Something an :class:`Opening` closes when its ``async with`` block ends."""

    async def close(self) -> None:
        """Release what was opened."""


_C = TypeVar("_C", bound=AsyncClosable)
_Self = TypeVar("_Self", bound="ClosedOnExit")


class ClosedOnExit:
    """A mixin: ``async with x`` closes ``x`` when the block ends (``close`` is the subclass's)."""

    async def close(self) -> None:
        """Release what was opened."""
        raise NotImplementedError

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def call(fn: Callable[[], _T], release: Callable[[_T], object] | None = None) -> _T:
    """Run the blocking ``fn()`` in a worker thread and return its result, or raise what it raised.

    Args:
        fn: the blocking call.
        release: undoes what ``fn`` made, should the caller be cancelled
            before taking it; run in a thread once ``fn`` has returned.

    Returns:
        What ``fn`` returned.
    """
    future = asyncio.get_running_loop().run_in_executor(None, fn)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if release is not None:
            future.add_done_callback(functools.partial(_release_result, release))
        raise


def _release_result(release: Callable[[_T], object], future: asyncio.Future[_T]) -> None:
    """Done-callback of a call whose caller was cancelled: release what it made, off the loop."""
    if future.cancelled() or future.exception() is not None:
        return
    # A thread of its own, not the executor: this may run while asyncio.run is shutting the executor down.
    threading.Thread(target=_quietly, args=(release, future.result()), name="discovery-aio-release").start()


def _quietly(release: Callable[[_T], object], value: _T) -> None:
    try:
        release(value)
    except Exception:
        _log.warning("releasing %r after a cancelled call failed", value, exc_info=True)


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Schedule ``fn(*args)`` on ``loop`` from any thread; dropped if the loop is closed (nobody listens any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


class Opening(Generic[_C]):
    """An open that runs in a worker thread: ``x = await opening``, or ``async with opening as x`` to close it after.

    Made by :func:`discovery.aio.connect`, :meth:`~discovery.aio.AsyncRegistry.register`
    and :meth:`~discovery.aio.AsyncRegistry.cache`. Each ``await`` or
    ``async with`` opens anew. Errors are those of the sync call, raised
    where it is awaited or entered.
    """

    def __init__(self, open: Callable[[], Coroutine[Any, Any, _C]]) -> None:
        self._open = open
        self._opened: _C | None = None

    def __await__(self) -> Generator[Any, None, _C]:
        return self._open().__await__()

    async def __aenter__(self) -> _C:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened.close()
