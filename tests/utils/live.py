"""The API served over real HTTP on a port that survives a restart: the scanner-side client's
tests take the server down and bring it back on the same URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.config import Settings, get_settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_api(settings: Settings, port: int, timeout: float = 30.0) -> Iterator[str]:
    """The amaqc API for ``settings`` on http://127.0.0.1:``port`` until the block ends
    (uvicorn in a thread; the port is bound with SO_REUSEADDR, so it can serve again)."""
    import uvicorn

    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        app.dependency_overrides.pop(get_settings, None)
