from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import heartbeats, repo
from app.db.models import Series, WorkerHeartbeat
from app.db.session import session_scope
from app.db.types import utcnow
from app.queue import queue_depth
from app.sweeper import release_worker, sweep
from tests.utils.service import dicom_bytes, series_files


def test_a_series_stuck_in_queued_is_enqueued_again(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    assert sweep(settings) == []
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None
        series.queued_at = utcnow() - timedelta(seconds=settings.stuck_after_seconds + 1)
    assert sweep(settings) == [series_id]


def test_a_stable_slice_series_is_closed_and_queued(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    settings.series_stable_seconds = 0
    one = [("files", ("1.dcm", dicom_bytes(series_uid="1.2.3.4"), "application/dicom"))]
    series_id = client.post("/api/v1/slices", files=one, headers=scanner).json()["series_id"]
    assert sweep(settings) == [series_id]
    assert client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["status"] == "queued"


# --- heartbeats: a silent worker's series, a lost message ------------------------------


def _upload(client: TestClient, scanner: dict[str, str], uid: str) -> int:
    files = series_files(1, series_uid=uid)
    return int(client.post("/api/v1/series", files=files, headers=scanner).json()["series_id"])


def _beat(settings: Settings, name: str, *, ago: float, idle_for: float | None) -> None:
    """A heartbeat row of worker ``name`` written ``ago`` seconds ago, idle for ``idle_for``
    seconds by then (None: running a task)."""
    now = utcnow()
    with session_scope(settings.database_url) as session:
        heartbeats.beat(session, name, "inference", now - timedelta(hours=1), None)
        row = session.get(WorkerHeartbeat, name)
        assert row is not None
        row.beat_at = now - timedelta(seconds=ago)
        row.idle_since = None if idle_for is None else now - timedelta(seconds=idle_for)


def _processing(settings: Settings, series_id: int, worker: str, ago: float) -> None:
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None
        repo.mark_processing(session, series, worker=worker)
        series.started_at = utcnow() - timedelta(seconds=ago)


def _status(settings: Settings, series_id: int) -> str:
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None
        return series.status


def test_a_processing_series_whose_worker_went_silent_is_enqueued_again(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    silent = settings.worker_silent_seconds
    assert silent < settings.stuck_after_seconds / 10  # so this is not the stuck rule
    series_id = _upload(client, scanner, "1.2.3.9.1")
    _processing(settings, series_id, "gpu-1:4242", ago=silent + 1)
    _beat(settings, "gpu-1:4242", ago=silent + 1, idle_for=None)  # killed mid-series
    assert sweep(settings) == [series_id]
    assert _status(settings, series_id) == "queued"
    assert queue_depth(settings.broker_url) == 2  # the upload's message and this one


def test_a_processing_series_of_a_beating_worker_is_left_alone(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    silent = settings.worker_silent_seconds
    series_id = _upload(client, scanner, "1.2.3.9.2")
    _processing(settings, series_id, "gpu-1:4243", ago=silent * 3)  # a long series
    _beat(settings, "gpu-1:4243", ago=1, idle_for=None)
    assert sweep(settings) == []
    assert _status(settings, series_id) == "processing"


def test_a_series_still_queued_while_an_inference_worker_idles_is_sent_again(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    """The broker lost its message (restarted): an idle worker would have taken it by now."""
    silent = settings.worker_silent_seconds
    series_id = _upload(client, scanner, "1.2.3.9.3")
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None
        series.queued_at = utcnow() - timedelta(seconds=silent + 1)
    _beat(settings, "gpu-1:4244", ago=1, idle_for=None)  # busy: the message may be waiting
    assert sweep(settings) == []
    _beat(settings, "gpu-1:4244", ago=1, idle_for=silent + 1)
    assert sweep(settings) == [series_id]
    assert sweep(settings) == []  # sent just now: not lost again before another silence


def test_release_worker_enqueues_at_once_the_series_a_dead_worker_held(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    held = _upload(client, scanner, "1.2.3.9.4")
    other = _upload(client, scanner, "1.2.3.9.5")
    _processing(settings, held, "gpu-1:4245", ago=0)
    _processing(settings, other, "gpu-1:4246", ago=0)
    _beat(settings, "gpu-1:4245", ago=0, idle_for=None)
    assert release_worker(settings, "gpu-1:4245") == [held]
    assert (_status(settings, held), _status(settings, other)) == ("queued", "processing")
    with session_scope(settings.database_url) as session:
        assert session.get(WorkerHeartbeat, "gpu-1:4245") is None


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_heartbeat_writes_its_row_marks_busy_and_idle_and_removes_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Busy and idle are written by the heartbeat's own thread, at once, not by the task's
    (issue 18: a task does not wait for those two commits)."""
    from app.worker.heartbeat import Heartbeat

    writers: list[str] = []
    beat = heartbeats.beat

    def noted(*args: Any, **kwargs: Any) -> None:
        writers.append(threading.current_thread().name)
        beat(*args, **kwargs)

    monkeypatch.setattr(heartbeats, "beat", noted)
    heartbeat = Heartbeat(settings, "inference", name="gpu-2:7")

    def row() -> WorkerHeartbeat | None:
        with session_scope(settings.database_url) as session:
            return session.get(WorkerHeartbeat, "gpu-2:7")

    heartbeat.start()
    try:
        first = row()
        assert first is not None and first.idle_since is not None
        writers.clear()
        heartbeat.busy()
        assert _eventually(lambda: (r := row()) is not None and r.idle_since is None)
        heartbeat.idle()
        assert _eventually(lambda: (r := row()) is not None and r.idle_since is not None)
        assert writers and set(writers) == {"amaqc-heartbeat"}
    finally:
        heartbeat.stop()
    assert row() is None
