"""Load (issue 20): 100 single-slice uploads from 8 concurrent clients against a live
``amaqc up`` (SQLite, the local broker, the tiny model): nothing lost, nothing duplicated, no
5xx. The same code as ``bench/load.py`` (1,000 uploads, 16 clients), smaller; it prints the
figures (``[load] ...``) and asserts no time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.utils.load import run_load
from tests.utils.up import start_up, stop_up, wait_ready


@pytest.mark.slow
def test_100_uploads_from_8_clients_lose_and_duplicate_nothing(
    tmp_path: Path, checkpoint: Path, record_property: Callable[[str, object], None]
) -> None:
    up = start_up(tmp_path / "data", checkpoint, env={"AMAQC_SERIES_STABLE_SECONDS": "1"})
    try:
        key = wait_ready(up)
        assert key is not None, up.output()[-2000:]
        result = run_load(up.url, key, up.database_url, uploads=100, clients=8, timeout=300)
    finally:
        stop_up(up)
    print(f"[load] {result.summary()}")
    for name in ("accepted", "server_errors", "lost", "duplicated", "drain_seconds"):
        record_property(name, getattr(result, name))
    assert result.accepted == 100, (result.summary(), up.output()[-2000:])
    assert (result.lost, result.duplicated, result.server_errors) == (0, 0, 0), (
        result.summary(),
        result.unfinished,
    )
