"""Uploads during an outage: a broker that is down still stores (202, queued once it is back:
``test_worker_recovery.py`` shows that end to end); a database that is down answers 503 with
Retry-After, never a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings, get_settings
from app.db.models import Series
from app.db.session import session_scope
from tests.utils.service import series_files

NOTHING_LISTENS = "127.0.0.1:1"  # port 1: connection refused at once


def test_an_upload_while_the_broker_is_down_is_stored_and_queued(
    settings: Settings, scanner: dict[str, str]
) -> None:
    from app.api.main import app

    down = settings.model_copy(update={"broker_url": f"redis://{NOTHING_LISTENS}/0"})
    app.dependency_overrides[get_settings] = lambda: down
    try:
        with TestClient(app) as client:
            r = client.post("/api/v1/series", files=series_files(2), headers=scanner)
    finally:
        app.dependency_overrides.clear()
    assert r.status_code == 202, r.text
    with session_scope(settings.database_url) as session:
        series = session.get(Series, r.json()["series_id"])
        assert series is not None and series.status == "queued"


def test_an_upload_while_the_database_is_down_is_answered_503_with_retry_after(
    settings: Settings, scanner: dict[str, str]
) -> None:
    from app.api.main import app

    down = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@{NOTHING_LISTENS}/amaqc"}
    )
    app.dependency_overrides[get_settings] = lambda: down
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            r = client.post("/api/v1/series", files=series_files(2), headers=scanner)
    finally:
        app.dependency_overrides.clear()
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "5"
    assert "nothing was stored" in r.json()["detail"]
