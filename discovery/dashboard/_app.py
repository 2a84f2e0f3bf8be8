"""The dashboard's Starlette application: the page, its event stream, a JSON snapshot, Prometheus SD and metrics.

:func:`create_app` builds the application; its lifespan opens the service
cache (unless one is given), starts the :class:`~discovery.dashboard._feed.Feed`
that turns the cache's changes into numbered messages, and enables the
Prometheus metrics; shutdown undoes each in reverse. ``/events`` streams the
feed to each browser (see the package docstring for the protocol); every
other route answers from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from discovery import sd
from discovery._validation import check_prefix
from discovery.cache import ServiceCache
from discovery.dashboard._feed import Feed
from discovery.errors import InvalidInput, InvalidValue
from discovery.registry import Registry

if TYPE_CHECKING:
    from discovery.metrics import RegistryMetrics

_log = logging.getLogger("discovery.dashboard")

RETRY_MILLISECONDS = 2000
"""How long a browser waits before reconnecting a dropped stream (the SSE ``retry:`` field)."""


def public_url(url: str) -> str:
    """``url`` as the page shows it: no ``user:password@``, no query (options like ``password=``), no fragment."""
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _top_level(prefix: str) -> str:
    return prefix.split("/", 1)[0]


def _within(service: str, prefix: str) -> bool:
    return not prefix or service == prefix or service.startswith(prefix + "/")


class Dashboard:
    """What one application serves: a registry's services under a prefix, through one cache and one feed.

    Available as ``app.state.dashboard``; :attr:`cache` and :attr:`feed` are
    set while the application runs (between its lifespan's startup and shutdown).
    """

    def __init__(
        self,
        registry: Registry,
        prefix: str,
        cache: ServiceCache | None,
        feed_options: dict[str, Any],
        keepalive: float,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self._given_cache = cache
        self._feed_options = feed_options
        self._keepalive = keepalive
        self.cache: ServiceCache | None = None
        self.feed: Feed | None = None
        self.metrics: RegistryMetrics | None = None
        self.metrics_problem = "metrics are not enabled yet"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._ending = False

    @property
    def header(self) -> dict[str, Any]:
        """What the page's header shows besides the state: backend, URL (without secrets), prefix."""
        return {"backend": self.registry.backend.name, "url": public_url(self.registry.url), "prefix": self.prefix}

    # -- lifespan --------------------------------------------------------------

    async def start(self) -> None:
        """Open the cache (when none was given), start the feed, enable the metrics.

        Raises:
            BackendError: the cache's watch could not be opened.
        """
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._ending = False
        cache = self._given_cache
        if cache is None:
            # The top-level service, as `discovery tree` reads it: a definition above the prefix counts (parent-down).
            cache = await run_in_threadpool(self.registry.cache, _top_level(self.prefix))
        self.cache = cache
        feed = Feed(cache, self.prefix, self.header, **self._feed_options)
        feed.on_flush(self._wake_from_thread)
        await run_in_threadpool(feed.start)
        self.feed = feed
        self._enable_metrics(cache)

    async def stop(self) -> None:
        """End the streams, disable the metrics, stop the feed and close the cache this application opened."""
        self.end_streams()
        if self.metrics is not None:
            metrics, self.metrics = self.metrics, None
            await run_in_threadpool(metrics.close)
        if self.feed is not None:
            await run_in_threadpool(self.feed.close)
        if self.cache is not None and self._given_cache is None:
            await run_in_threadpool(self.cache.close)

    def _enable_metrics(self, cache: ServiceCache) -> None:
        try:
            # Imported here: prometheus_client is an optional dependency; without it the page still works.
            from discovery.metrics import enable
        except ImportError as exc:
            self.metrics_problem = f"metrics unavailable: {exc}"
            _log.warning("dashboard: %s; /metrics answers 503", self.metrics_problem)
            return
        self.metrics = enable(self.registry, services=self.prefix, cache=cache)

    def end_streams(self) -> None:
        """End every open event stream (the server is shutting down). Call from the event loop."""
        self._ending = True
        self._wake()

    # -- waking the streams ----------------------------------------------------

    def _wake_from_thread(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- what the routes read --------------------------------------------------

    def _running(self) -> tuple[ServiceCache, Feed]:
        if self.cache is None or self.feed is None:
            raise RuntimeError("the dashboard is not running (its lifespan has not started)")
        return self.cache, self.feed

    async def stream(self, last_event_id: str | None) -> AsyncIterator[bytes]:
        """The event stream of one browser: the missed messages or a snapshot, then every new message.

        Resumes after ``last_event_id`` when every message after it is still
        in the feed's ring; otherwise, and on a first connection, starts with
        a ``snapshot``. A browser that falls behind the ring gets a new
        snapshot. A comment line every ``keepalive`` seconds keeps proxies from
        closing an idle stream.
        """
        _cache, feed = self._running()
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        resume = feed.parse_id(last_event_id)
        position = resume if resume is not None and feed.after(resume) is not None else None
        while not self._ending:
            changed = self._changed
            missed = None if position is None else feed.after(position)
            if missed is None:
                position, message = await run_in_threadpool(feed.snapshot_message)
                yield message
            elif missed:
                position = missed[-1][0]
                yield b"".join(message for _seq, message in missed)
            else:
                try:
                    await asyncio.wait_for(changed.wait(), self._keepalive)
                except TimeoutError:
                    yield b": keepalive\n\n"

    def sd_targets(self, prefix: str) -> list[sd.TargetGroup]:
        """The Prometheus target groups under ``prefix`` (``""``: the dashboard's prefix).

        Raises:
            InvalidName: a bad prefix.
            InvalidValue: ``prefix`` lies outside the dashboard's prefix.
        """
        cache, _feed = self._running()
        prefix = check_prefix(prefix) or self.prefix
        if not _within(prefix, self.prefix):
            raise InvalidValue("prefix", prefix, f"outside the dashboard's prefix {self.prefix!r}")
        return sd.targets(cache, prefix)


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


async def _index(request: Request) -> Response:
    page: str = request.app.state.page
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


async def _events(request: Request) -> Response:
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return StreamingResponse(
        _dashboard(request).stream(last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _snapshot(request: Request) -> Response:
    _cache, feed = _dashboard(request)._running()
    return JSONResponse(await run_in_threadpool(feed.snapshot_data))


async def _prometheus_sd(request: Request) -> Response:
    try:
        groups = _dashboard(request).sd_targets(request.query_params.get("prefix", ""))
    except InvalidInput as exc:
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
    return JSONResponse(groups)


async def _metrics(request: Request) -> Response:
    dashboard = _dashboard(request)
    metrics = dashboard.metrics
    if metrics is None:
        return PlainTextResponse(dashboard.metrics_problem + "\n", status_code=503)
    body, content_type = await run_in_threadpool(metrics.exposition)
    return Response(body, headers={"Content-Type": content_type})


def create_app(
    registry: Registry,
    prefix: str = "",
    *,
    cache: ServiceCache | None = None,
    window: float = 0.1,
    ring_size: int = 1000,
    log_size: int = 200,
    keepalive: float = 15.0,
) -> Starlette:
    """The dashboard of ``registry``'s services under ``prefix``, as an ASGI application.

    Args:
        registry: the registry to show; the caller keeps it open while the application runs, then closes it.
        prefix: the services to show (``""``: all).
        cache: a cache to read, at or above ``prefix``, owned by the caller;
            None: the application opens one on its top-level service at
            startup and closes it at shutdown.
        window: seconds between two flushes of changes to browsers, at least.
        ring_size: how many recent messages a reconnecting browser can resume from.
        log_size: how many recent events a new page shows.
        keepalive: seconds between two keep-alive comments on an idle stream.

    Returns:
        The Starlette application; ``app.state.dashboard`` is its :class:`Dashboard`.

    Raises:
        InvalidName: a bad prefix.
        InvalidValue: ``cache`` does not hold ``prefix``.
    """
    prefix = check_prefix(prefix)
    if cache is not None and not _within(prefix, cache.prefix):
        raise InvalidValue("prefix", prefix, f"outside the given cache's prefix {cache.prefix!r}")
    options = {"window": window, "ring_size": ring_size, "log_size": log_size}
    dashboard = Dashboard(registry, prefix, cache, options, keepalive)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dashboard.start()
        try:
            yield
        finally:
            await dashboard.stop()

    app = Starlette(
        routes=[
            Route("/", _index),
            Route("/events", _events),
            Route("/api/snapshot", _snapshot),
            Route("/sd/prometheus", _prometheus_sd),
            Route("/metrics", _metrics),
            Mount("/static", StaticFiles(packages=[("discovery.dashboard", "static")]), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    app.state.page = resources.files("discovery.dashboard").joinpath("static/index.html").read_text(encoding="utf-8")
    return app


def end_streams(app: object) -> None:
    """End the event streams of a dashboard application, so a server shutting down need not wait for them."""
    state = getattr(app, "state", None)
    dashboard = getattr(state, "dashboard", None)
    if isinstance(dashboard, Dashboard):
        dashboard.end_streams()
