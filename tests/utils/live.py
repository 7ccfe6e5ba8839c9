"""The API served over real HTTP on a port that survives a restart: the scanner-side client's
tests take the server down and bring it back on the same URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.config import Settings, get_settings
from tests.utils.server import serve


@contextmanager
def live_api(settings: Settings, port: int, timeout: float = 30.0) -> Iterator[str]:
    """The amaqc API for ``settings`` on http://127.0.0.1:``port`` until the block ends
    (uvicorn in a thread, :func:`tests.utils.server.serve`; it can serve again on the port)."""
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    try:
        with serve(app, timeout, port=port) as url:
            yield url
    finally:
        app.dependency_overrides.pop(get_settings, None)
