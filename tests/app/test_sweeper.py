from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from app.config import Settings
from app.db.models import Series
from app.db.session import session_scope
from app.db.types import utcnow
from app.sweeper import sweep
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
