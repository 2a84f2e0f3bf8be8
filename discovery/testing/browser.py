"""Headless Chromium for the dashboard's tests and screenshot, driven by Playwright, never downloaded.

The browser is Debian's ``/usr/bin/chromium`` (installed by ``make test``'s
system packages); Playwright only drives it, and is told never to fetch a
browser of its own (it cannot here). The flags keep Chromium off the
network: no background requests, no updates, no sync.

``python -m discovery.testing.browser docs/dashboard.png`` regenerates the
README's picture of the dashboard: a memory registry seeded with the story's
hierarchy (up, degraded and down services, instances with meta), served by
the real dashboard, drawn by the real browser.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "browser_page", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium."""

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""No sandbox (tests run as root), and nothing that reaches for the network on its own."""


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A new page of a headless Chromium, closed with the browser at the end of the block.

    Raises:
        FileNotFoundError: Chromium is not installed (``make system-packages`` installs it).
    """
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: install Debian's chromium (make system-packages)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def _seed(registry: Any) -> None:
    """The story's hierarchy: ``buzz`` with its sub-projects and modules, in every health."""
    registry.define("buzz/buzzadmin/api", 2)
    registry.define("buzz/buzzadmin/web", 1)
    registry.define("buzz/search/indexer", 2)
    registry.define("buzz/search/query", 1)
    for n in range(3):
        registry.register(
            "buzz/buzzadmin/api",
            f"api-{n}:8080",
            address=f"10.0.1.{n + 1}",
            port=8080,
            meta={"version": "1.4.2", "zone": "eu-1" if n < 2 else "us-1", "weight": 1 + n},
        )
    registry.register("buzz/buzzadmin/web", "web-0:80", address="10.0.2.1", port=80, meta={"version": "2.0.1"})
    registry.register("buzz/search/indexer", "idx-0:9200", address="10.0.3.1", port=9200, meta={"shard": 1})
    registry.register("buzz/mail/smtp", "smtp-0:25", address="10.0.4.1", port=25)
    registry.define("buzz/mail/imap", 1)


def screenshot(path: Path, page: Any = None) -> None:
    """Draw the dashboard of a seeded memory registry in Chromium and save it as a PNG at ``path``.

    Args:
        path: where to write the PNG.
        page: a page of an open browser to draw in; None opens one.
    """
    if page is None:
        with browser_page(height=560) as opened:
            screenshot(path, opened)
        return
    import discovery
    from discovery.dashboard import create_app, running

    with discovery.connect("memory://dashboard-screenshot") as registry:
        _seed(registry)
        with running(create_app(registry, "")) as url:
            page.goto(url)
            page.wait_for_selector('body[data-ready="true"]')
            page.click('.node[data-service="buzz/buzzadmin/api"] > .node-head')
            page.wait_for_selector('#instances[data-for="buzz/buzzadmin/api"][data-count="3"]')
            registry.register("buzz/search/query", "q-0:8000", address="10.0.5.1", port=8000)
            page.wait_for_selector('#log > li[data-path="buzz/search/query/q-0:8000"]')
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m discovery.testing.browser PATH``: write the dashboard's screenshot to PATH."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m discovery.testing.browser PATH.png", file=sys.stderr)
        return 2
    screenshot(Path(args[0]))
    print(f"wrote {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
