"""Both ways for real, no mocks: the API (in-process) enqueues, a real Celery worker
subprocess analyses, verdict rows appear. SQLite + local SQLAlchemy broker, and PostgreSQL +
Redis on 127.0.0.1 (the ``stack`` fixture of conftest.py)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.db.models import InstanceVerdict, SeriesVerdict
from app.db.session import session_scope
from app.sweeper import sweep
from tests.app.conftest import auth, new_key
from tests.utils.service import dicom_bytes, series_files, worker_log


def _client(settings: Settings) -> TestClient:
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings
    return TestClient(app)


def _wait_done(client: TestClient, url: str, headers: dict[str, str], settings: Settings) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(url, headers=headers).json()
        if body["status"] in ("done", "failed"):
            return body
        sweep(settings)  # closes stable slice series (the API's sweeper thread does this live)
        time.sleep(0.3)
    log = worker_log(settings).read_text()[-3000:]
    raise AssertionError(f"no verdict within 120 s: {body}\nworker log:\n{log}")


@pytest.mark.slow
def test_uploaded_series_gets_its_verdict_from_a_real_worker(stack: Settings) -> None:
    headers = auth(new_key(stack, "scanner"))
    with _client(stack) as client:
        accepted = client.post("/api/v1/series", files=series_files(3), headers=headers).json()
        body = _wait_done(client, accepted["status_url"], headers, stack)
    assert body["status"] == "done", body
    assert body["verdict"]["label"] in ("artifact", "clean") and len(body["instances"]) == 3
    with session_scope(stack.database_url) as session:
        assert session.scalar(select(func.count()).select_from(InstanceVerdict)) == 3
        assert session.scalar(select(func.count()).select_from(SeriesVerdict)) == 1


@pytest.mark.slow
def test_slices_get_a_series_verdict_once_stable(stack: Settings) -> None:
    headers = auth(new_key(stack, "scanner"))
    with _client(stack) as client:
        for n in (1, 2):
            one = [("files", (f"{n}.dcm", dicom_bytes(series_uid="1.2.3.77", instance=n), "x"))]
            accepted = client.post("/api/v1/slices", files=one, headers=headers).json()
        body = _wait_done(client, accepted["status_url"], headers, stack)
    assert body["status"] == "done" and len(body["instances"]) == 2
    assert body["verdict"] is not None
