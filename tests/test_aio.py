"""discovery.aio on real servers: the sync API's events, errors and cleanup, and a loop that never blocks.

Each test runs its coroutine with ``asyncio.run`` (no pytest-asyncio) on the
memory backend and on the session's local etcd (v3 and v2 API) and
ZooKeeper, each under a fresh root. Waits have deadlines; nothing sleeps a
fixed time. The no-blocking test runs the loop in debug mode with a 50 ms
slow-callback threshold and fails on any "Executing ... took" warning; a
companion test proves that detector fires on a loop that does block.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

import discovery
import discovery.aio as aio
from discovery import Event, EventKind, InvalidName, InvalidValue, NotFound, RegistryClosed, UnknownBackend
from discovery.servers import EtcdCluster, ZooKeeperCluster
from discovery.testing.waiting import wait_until

DEADLINE = 20.0
SLOW_CALLBACK_SECONDS = 0.05


@pytest.fixture(params=["memory", "etcd", "etcd2", "zookeeper"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh root on each backend."""
    scheme: str = request.param
    name = f"aio-{uuid.uuid4().hex[:10]}"
    if scheme == "memory":
        return f"memory://{name}"
    cluster: EtcdCluster | ZooKeeperCluster = request.getfixturevalue(
        "zookeeper_cluster" if scheme == "zookeeper" else "etcd_cluster"
    )
    return cluster.url(scheme, f"/{name}")


def run(coroutine: Awaitable[None]) -> None:
    """Run a test's coroutine on a fresh loop, failing it after :data:`DEADLINE` seconds instead of hanging."""

    async def bounded() -> None:
        async with asyncio.timeout(DEADLINE * 2):
            await coroutine

    asyncio.run(bounded())


async def next_event(watch: aio.AsyncWatch) -> Event:
    event = await watch.get(DEADLINE)
    assert event is not None, f"no event within {DEADLINE} s"
    return event


def thread_named(name: str) -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == name and t.is_alive()), None)


async def eventually(predicate: Callable[[], object], message: str) -> None:
    """Wait on the loop, with a deadline, until ``predicate()`` holds."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"{message} (after {DEADLINE} s)"
        await asyncio.sleep(0.01)


# -- the API surface ---------------------------------------------------------


def test_importing_discovery_does_not_import_aio() -> None:
    check = "import sys, discovery; assert 'discovery.aio' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)


def test_all_is_sorted_and_documented() -> None:
    assert aio.__all__ == sorted(aio.__all__)
    for name in aio.__all__:
        assert inspect.getdoc(getattr(aio, name)), name
    for cls in (aio.AsyncRegistry, aio.AsyncRegistration, aio.AsyncWatch, aio.AsyncServiceCache):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                assert inspect.getdoc(member), f"{cls.__name__}.{name}"
    for name, member in inspect.getmembers(aio.AsyncRegistry, inspect.isfunction):
        if not name.startswith("_") and name != "close":
            assert "Raises:" in (member.__doc__ or ""), name


# -- events, in order --------------------------------------------------------


def test_register_update_close_are_seen_in_order_by_get_and_async_for(url: str) -> None:
    async def main() -> None:
        async with aio.connect(url) as reg, reg.watch("shop") as polled, reg.watch("shop") as iterated:
            assert polled.snapshot.instances == ()
            collected: list[Event] = []

            async def consume() -> None:
                async for event in iterated:
                    collected.append(event)
                    if event.kind is EventKind.REMOVED:
                        return

            consumer = asyncio.create_task(consume())
            registration = await reg.register("shop/api", "host-1", address="10.0.0.1", port=8080, meta={"v": 1})
            assert registration.alive and registration.key == "shop/api/host-1"
            assert registration.instance.port == 8080
            updated = await registration.update(meta={"v": 2})
            assert updated.meta == {"v": 2}
            assert [i.id for i in await reg.instances("shop/api")] == ["host-1"]
            await registration.close()
            assert not registration.alive and registration.closed

            polled_events = [await next_event(polled) for _ in range(3)]
            await asyncio.wait_for(consumer, DEADLINE)
            for events in (polled_events, collected):
                assert [e.kind for e in events] == [EventKind.ADDED, EventKind.UPDATED, EventKind.REMOVED]
                assert [e.instance.meta["v"] if e.instance else None for e in events] == [1, 2, 2]
                assert events[0].revision < events[1].revision < events[2].revision
            assert await polled.get(0) is None
            assert await polled.get_batch(0) == []

    run(main())


def test_register_many_registers_every_instance_in_order(url: str) -> None:
    async def main() -> None:
        async with aio.connect(url) as reg:
            wanted = [discovery.Instance("bulk", f"i{n}", "127.0.0.1", 7000 + n) for n in range(5)]
            made = await reg.register_many(wanted, ttl=5)
            assert [r.instance_id for r in made] == [i.id for i in wanted]
            assert all(r.alive for r in made)
            assert [i.port for i in await reg.instances("bulk")] == [7000 + n for n in range(5)]
            await made[0].close()
            assert len(await reg.instances("bulk")) == 4

    run(main())


def test_leaving_async_with_deregisters_for_another_registry(url: str) -> None:
    with discovery.connect(url) as observer, observer.watch("shop") as seen:

        async def main() -> None:
            async with aio.connect(url) as reg:
                async with reg.register("shop/api", "scoped", port=1):
                    pass
                await reg.register("shop/api", "held", port=2)
                await reg.define("shop/api", min_instances=1)
                assert await reg.definitions("shop") == {"shop/api": 1}
                assert (await reg.status("shop/api")).instances == 1
                assert [i.id for i in (await reg.snapshot("shop")).instances] == ["held"]

        run(main())
        events = [seen.get(DEADLINE) for _ in range(4)]
    assert [(e.kind, e.instance_id) for e in events if e is not None] == [
        (EventKind.ADDED, "scoped"),
        (EventKind.REMOVED, "scoped"),
        (EventKind.ADDED, "held"),
        (EventKind.REMOVED, "held"),
    ]


# -- cancellation --------------------------------------------------------------


def test_cancelling_a_task_in_async_for_closes_its_watch_promptly(url: str) -> None:
    prefix = f"cancel-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with aio.connect(url) as reg:
            watch = await reg.watch(prefix)
            pump = thread_named(f"discovery-watch-{prefix}")
            assert pump is not None

            # A timeout around one get() cancels only that wait: the watch stays open.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await watch.get()
            assert not watch.closed

            iterating = asyncio.Event()

            async def consume() -> None:
                iterating.set()  # in the same step, __anext__ finds nothing and blocks in the waker
                async for _ in watch:
                    pass

            task = asyncio.create_task(consume())
            await asyncio.wait_for(iterating.wait(), DEADLINE)
            waker = thread_named(f"discovery-aio-watch-{prefix}")
            assert waker is not None
            assert not task.done()

            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 2.0
            assert watch.closed and watch.sync.closed
            assert not pump.is_alive() and not waker.is_alive()
            with pytest.raises(RegistryClosed):
                await watch.get(0)

    run(main())


def test_closing_the_registry_ends_an_async_for() -> None:
    async def main() -> None:
        reg = await aio.connect(f"memory://aio-{uuid.uuid4().hex[:10]}")
        watch = await reg.watch("shop")

        seen: list[Event] = []

        async def consume() -> None:
            async for event in watch:
                seen.append(event)

        task = asyncio.create_task(consume())
        await reg.register("shop/api", "a", port=1)
        await eventually(lambda: seen, "the watch did not see the registration")
        await reg.close()
        await asyncio.wait_for(task, DEADLINE)  # the async for ended; it did not hang
        assert watch.closed

    run(main())


def test_a_cancelled_register_leaves_nothing_registered() -> None:
    url = f"memory://aio-{uuid.uuid4().hex[:10]}"

    with discovery.connect(url) as observer:

        async def cancelled() -> None:
            async with aio.connect(url) as reg:

                async def register() -> None:
                    await reg.register("shop/api", "ghost", port=1)

                task = asyncio.create_task(register())
                await asyncio.sleep(0)  # the task starts: its register is handed to a worker thread
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.to_thread(
                    wait_until, lambda: not reg.sync.registrations(), DEADLINE, message="the registration stayed"
                )

        run(cancelled())
        assert observer.instances("shop/api") == []


# -- the cache -----------------------------------------------------------------


def test_cache_follows_registrations_and_its_provider_picks(url: str) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        async with aio.connect(url) as reg, reg.cache("shop") as cache:
            assert await cache.wait_ready(DEADLINE)
            heard: list[tuple[str, str, bool]] = []
            cache.subscribe(lambda e: heard.append((e.kind.value, e.instance_id, threading.get_ident() == loop_thread)))
            async with reg.register("shop/api", "a", port=1), reg.register("shop/api", "b", port=2):
                assert await cache.wait_for(lambda c: len(c.instances("shop/api")) == 2, DEADLINE)
                assert [i.id for i in cache.instances("shop/api")] == ["a", "b"]
                assert cache.services() == ["shop/api"]
                provider = cache.provider("shop/api")
                assert sorted(provider.pick().id for _ in range(4)) == ["a", "a", "b", "b"]
            assert await cache.wait_for(lambda c: not c.instances("shop/api"), DEADLINE)
            await eventually(lambda: len(heard) == 4, "the subscriber did not hear four events")
            assert sorted(heard) == [
                ("added", "a", True),
                ("added", "b", True),
                ("removed", "a", True),
                ("removed", "b", True),
            ]
        assert cache.closed

    run(main())


# -- errors ----------------------------------------------------------------------


def test_errors_are_the_sync_apis_typed_errors() -> None:
    async def main() -> None:
        with pytest.raises(UnknownBackend):
            await aio.connect("consul://127.0.0.1:8500")
        async with aio.connect(f"memory://aio-{uuid.uuid4().hex[:10]}") as reg:
            with pytest.raises(InvalidName) as caught:
                await reg.register("shop/bad name", "x")
            assert caught.value.field == "service"
            with pytest.raises(InvalidName):
                async for _ in reg.watch("bad name"):
                    pass
            with pytest.raises(InvalidName):
                await reg.cache("_reserved")
            with pytest.raises(NotFound):
                await reg.deregister("shop/api", "nobody")
            registration = await reg.register("shop/api", "x", port=1)
            with pytest.raises(InvalidValue):
                await registration.update(port=70000)
            await reg.deregister("shop/api", "x")
            assert registration.closed
        with pytest.raises(RegistryClosed):
            await reg.register("shop/api", "y")
        with pytest.raises(RegistryClosed):
            await reg.watch("shop")

    run(main())


# -- nothing blocks the loop -----------------------------------------------------


class _SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode warnings about callbacks that held the loop too long."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.messages.append(message)


@pytest.fixture
def slow_callbacks() -> Iterator[_SlowCallbacks]:
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_in_debug_mode(main: Callable[[], Awaitable[None]]) -> None:
    async def debug() -> None:
        asyncio.get_running_loop().slow_callback_duration = SLOW_CALLBACK_SECONDS
        await main()

    asyncio.run(debug(), debug=True)


def test_the_slow_callback_detector_catches_a_blocking_call(slow_callbacks: _SlowCallbacks) -> None:
    async def blocks() -> None:
        time.sleep(SLOW_CALLBACK_SECONDS * 3)

    run_in_debug_mode(blocks)
    assert slow_callbacks.messages


def test_registering_watching_caching_and_picking_never_block_the_loop(
    url: str, slow_callbacks: _SlowCallbacks
) -> None:
    async def main() -> None:
        async with aio.connect(url) as reg, reg.cache("shop") as cache, reg.watch("shop") as watch:
            assert await cache.wait_ready(DEADLINE)
            heard: list[Event] = []
            cache.subscribe(heard.append)
            async with reg.register("shop/api", "a", port=1) as a, reg.register("shop/api", "b", port=2):
                await a.update(meta={"v": 2})
                assert [e.kind for e in [await next_event(watch) for _ in range(3)]] == [
                    EventKind.ADDED,
                    EventKind.ADDED,
                    EventKind.UPDATED,
                ]
                assert await cache.wait_for(lambda c: c.view("shop/api").by_id.get("a", None) is not None, DEADLINE)
                await eventually(lambda: cache.instances("shop/api") and cache.instances("shop/api")[0].meta, "no v2")
                provider = cache.provider("shop/api")
                for _ in range(50):
                    assert provider.pick().id in {"a", "b"}
                    await asyncio.sleep(0)
                assert [i.id for i in await reg.instances("shop/api")] == ["a", "b"]
            removed = 0
            async for event in watch:
                assert event.kind is EventKind.REMOVED
                removed += 1
                if removed == 2:
                    break
            await eventually(lambda: len(heard) == 5, "the subscriber did not hear five events")

    run_in_debug_mode(main)
    assert slow_callbacks.messages == []
