"""The asyncio watch: the core's :class:`~discovery.Watch`, read from the event loop without blocking it.

The loop takes what the watch has already buffered with non-blocking calls
(``next_item(0)``, ``get_batch(0)``: the watch's lock is only ever held for
a moment). Only when the buffer is empty does it wait, on an
:class:`asyncio.Event` set by a :class:`_Waker`: one thread per async watch
(not one per await, and not a slot of the shared executor held for the
watch's life) that, on demand, blocks in :meth:`Watch.wait` and wakes the
loop with ``call_soon_threadsafe``. Events are taken only as the consumer
asks, so the watch's bounded buffer and its overflow resync still apply to a
slow coroutine. Cancelling a task blocked in ``async for`` closes the watch
(its stream, its pump thread and the waker) before the cancellation
propagates.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

from discovery._watch import Watch
from discovery.aio._bridge import call, on_loop
from discovery.errors import RegistryClosed, WatchBroken
from discovery.models import Event, Notice, Snapshot

_T = TypeVar("_T")
_POLL_SECONDS = 0.25
_JOIN_SECONDS = 5.0


class _Waker:
    """Waits on a watch in its own thread while the loop wants something, then sets an :class:`asyncio.Event`."""

    def __init__(self, watch: Watch, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._watch = watch
        self._loop = loop
        self._name = name
        self._ready = asyncio.Event()
        self._lock = threading.Condition()
        self._wanted = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    async def wait(self, timeout: float | None) -> None:
        """Return when the watch may have something to take (or closed, or broke), or after ``timeout`` seconds."""
        self._ready.clear()
        with self._lock:
            if self._stopped:
                return
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._lock.notify_all()
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._wanted and not self._stopped:
                    if self._watch.closed or self._watch.broken is not None:
                        self._stopped = True  # nothing more to wait for; a later wait() returns at once
                        break
                    self._lock.wait(_POLL_SECONDS)
                if self._stopped:
                    break
            if self._watch.wait(_POLL_SECONDS):
                with self._lock:
                    self._wanted = False
                on_loop(self._loop, self._ready.set)
        on_loop(self._loop, self._ready.set)

    def stop(self) -> None:
        """End the thread (blocking: call it from a thread, after the watch is closed, so it is not waiting on it)."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_SECONDS)


class _Holder:
    """The sync watch of an async one, opened and closed only in worker threads, one at a time."""

    def __init__(self, make: Callable[[], Watch]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self.watch: Watch | None = None
        self.waker: _Waker | None = None
        self.closed = False

    def open(self) -> Watch:
        with self._lock:
            if self.closed:
                raise RegistryClosed("the watch was closed")
            if self.watch is None:
                self.watch = self._make()
            return self.watch

    def close(self) -> None:
        self.closed = True
        with self._lock:  # waits for an open under way, so that what it opens is closed too
            watch = self.watch
        if watch is not None:
            watch.close()
        if self.waker is not None:
            self.waker.stop()


class AsyncWatch:
    """Every change to the instances under a prefix, after :attr:`snapshot`, in order, for asyncio code.

    ``async for event in watch`` (events only, like iterating the sync
    watch), or poll with :meth:`get`, :meth:`get_batch`, :meth:`next_item`.
    The stream opens in a worker thread on first use, or with ``await
    watch`` / ``async with watch``. Made by :meth:`AsyncRegistry.watch`.
    """

    def __init__(self, make: Callable[[], Watch], prefix: str) -> None:
        self.prefix = prefix
        """The prefix watched, as given."""
        self._holder = _Holder(make)

    # -- opening and closing -------------------------------------------------

    async def open(self) -> AsyncWatch:
        """Open the stream (in a worker thread) if it is not open yet. ``await watch`` does the same.

        Returns:
            This watch.

        Raises:
            InvalidName: bad prefix.
            InvalidValue: bad ``since`` or buffer size.
            RegistryClosed: the registry or this watch was closed.
            BackendError: the stream could not be opened.
        """
        await self._open()
        return self

    async def _open(self) -> tuple[Watch, _Waker]:
        holder = self._holder
        watch = holder.watch
        if watch is None:
            watch = await call(holder.open, lambda _: holder.close())
        if holder.waker is None:
            loop = asyncio.get_running_loop()
            holder.waker = _Waker(watch, loop, f"discovery-aio-watch-{self.prefix or '/'}")
        return watch, holder.waker

    def __await__(self) -> Generator[Any, None, AsyncWatch]:
        return self.open().__await__()

    async def close(self) -> None:
        """Stop the watch, its stream and its threads. Idempotent; waits for an open under way, then closes it."""
        await call(self._holder.close)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called, here or on the underlying watch."""
        watch = self._holder.watch
        return self._holder.closed or (watch is not None and watch.closed)

    async def __aenter__(self) -> AsyncWatch:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- reading -------------------------------------------------------------

    @property
    def sync(self) -> Watch:
        """The underlying :class:`discovery.Watch` (its blocking calls belong in a thread).

        Raises:
            RuntimeError: the watch is not open yet (``await watch`` first).
        """
        watch = self._holder.watch
        if watch is None:
            raise RuntimeError("the watch is not open yet: use 'async with', 'await watch' or iterate it first")
        return watch

    @property
    def snapshot(self) -> Snapshot:
        """The instances when the stream began (empty with ``since``); the events continue from it.

        Raises:
            RuntimeError: the watch is not open yet.
        """
        return self.sync.snapshot

    @property
    def definitions(self) -> dict[str, int]:
        """The service definitions under the prefix, kept current; see :attr:`discovery.Watch.definitions`."""
        return self.sync.definitions

    @property
    def resyncs(self) -> int:
        """How many times the watch re-listed to close a gap."""
        return self.sync.resyncs

    @property
    def broken(self) -> WatchBroken | None:
        """The error the watch gave up with, or None while it goes on (or before it opens)."""
        watch = self._holder.watch
        return None if watch is None else watch.broken

    def request_resync(self, reason: str = "requested") -> None:
        """Re-list and emit the difference, as after a gap. See :meth:`discovery.Watch.request_resync`."""
        self.sync.request_resync(reason)

    async def _take(self, take: Callable[[Watch], _T | None], timeout: float | None) -> _T | None:
        """Return ``take(watch)`` (non-blocking) once it is not None, waiting at most ``timeout`` seconds."""
        watch, waker = await self._open()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            item = take(watch)
            if item is not None:
                return item
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await waker.wait(remaining)

    async def next_item(self, timeout: float | None = None) -> Event | Notice | None:
        """Return the next event or notice, waiting at most ``timeout`` seconds (None: forever).

        See :meth:`discovery.Watch.next_item`.

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        return await self._take(functools.partial(Watch.next_item, timeout=0), timeout)

    async def get(self, timeout: float | None = None) -> Event | None:
        """Return the next event (notices are skipped), or None if none arrived within ``timeout`` seconds.

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        return await self._take(functools.partial(Watch.get, timeout=0), timeout)

    async def get_batch(self, timeout: float | None = None) -> list[Event]:
        """Return the events of the next revision together (empty if none arrived in time).

        Raises:
            WatchBroken: the stream broke and could not be resumed.
            RegistryClosed: the watch was closed.
        """
        return await self._take(lambda watch: watch.get_batch(0) or None, timeout) or []

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Event:
        """The next event; the iteration ends when the watch is closed.

        Raises:
            WatchBroken: the stream broke and could not be resumed.
        """
        await self._open()
        try:
            event = await self.get()
        except RegistryClosed:
            raise StopAsyncIteration from None
        except asyncio.CancelledError:
            # The consumer is gone: close now, so no stream or thread outlives it.
            await call(self._holder.close)
            raise
        assert event is not None
        return event

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._holder.watch is not None else "not open"
        return f"<AsyncWatch {self.prefix!r} {state}>"
