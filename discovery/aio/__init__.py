"""discovery for asyncio: the same registry, engine and errors, awaited instead of blocked on.

A thin bridge over the sync API, never a second implementation: every call
that may wait on a server runs the sync method in a worker thread and raises
the same typed errors; a watch is the core's :class:`~discovery.Watch`, read
from the loop when it has something and waited on by one helper thread when
it has not, so no event is lost and nothing blocks the event loop; a cache
answers lookups from memory on the loop, and its providers' ``pick()`` never
blocks. Cancelling a task cancels its wait, never the guarantees: a call
already sent completes, what a cancelled call made is released, and a task
cancelled inside ``async for`` closes its watch::

    import discovery.aio

    async with discovery.aio.connect("memory://") as reg:
        async with reg.register("buzz/api", "host-1:8080", port=8080):
            async for event in reg.watch("buzz"):
                ...
"""

from discovery.aio._bridge import Opening
from discovery.aio._cache import AsyncServiceCache
from discovery.aio._registry import AsyncRegistration, AsyncRegistry, connect
from discovery.aio._watch import AsyncWatch

__all__ = ["AsyncRegistration", "AsyncRegistry", "AsyncServiceCache", "AsyncWatch", "Opening", "connect"]
