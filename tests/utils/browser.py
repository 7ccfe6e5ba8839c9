"""A real browser for UI tests: Debian's Chromium (``make browser`` installs it) driven by
Playwright; nothing is downloaded at test time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
WAIT_MS = 90_000  # a verdict from a cold worker on a busy 2-core machine


@contextmanager
def chromium_page(base_url: str, wait_ms: int = WAIT_MS) -> Iterator[Any]:
    """A Playwright ``Page`` at 1280x800 whose relative URLs go to ``base_url``."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
        context.set_default_timeout(wait_ms)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def sideways_overflow(page: Any, width: int, height: int) -> int:
    """Pixels the page is wider than a ``width`` x ``height`` window (<= 0: no sideways scroll)."""
    page.set_viewport_size({"width": width, "height": height})
    return int(page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth"))
