"""Per-scanner / per-protocol thresholds: the worker's verdicts (real model, real database),
which row applies, and the admin-only API."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import repo, thresholds
from app.db.models import Series
from app.db.session import session_scope
from app.worker.inference import analyse
from tests.app.conftest import app_client, auth, new_key, set_threshold
from tests.utils.protocols import header_dicom, upload
from tests.utils.service import worker_log


def put(settings: Settings, value: float, *, scanner: str = "", protocol: str = "") -> int:
    with session_scope(settings.database_url) as session:
        row = thresholds.set_threshold(
            session, scanner=scanner, protocol=protocol, value=value, origin="admin", set_by="t"
        )
        return row.id


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "admin", "boss"))


def test_the_same_image_gets_the_verdict_its_protocol_threshold_says(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 0.5)
    put(settings, 0.0, protocol="t1_mprage_SAG")  # flags every slice
    put(settings, 1.0, protocol="T2 TSE tra")  # flags none (an untrained net never says 1)
    t1 = upload(client, scanner, header_dicom("1.2.3.4.1", protocol="t1 mprage sag"))
    t2 = upload(client, scanner, header_dicom("1.2.3.4.2", protocol="t2_tse_tra"))
    assert analyse(settings, t1) == "done" and analyse(settings, t2) == "done"
    v1 = client.get(f"/api/v1/series/{t1}", headers=scanner).json()["verdict"]
    v2 = client.get(f"/api/v1/series/{t2}", headers=scanner).json()["verdict"]
    assert v1["probability"] == v2["probability"] < 1.0  # the same image, the same score
    assert (v1["label"], v1["threshold"], v1["threshold_source"]) == ("artifact", 0.0, "protocol")
    assert (v2["label"], v2["threshold"], v2["threshold_source"]) == ("clean", 1.0, "protocol")
    assert v1["threshold_protocol"] == "t1 mprage sag" and v1["threshold_scanner"] == ""
    slices = client.get(f"/api/v1/series/{t1}", headers=scanner).json()["instances"]
    assert [s["label"] for s in slices] == ["artifact"]


@pytest.mark.slow
def test_a_real_worker_applies_each_protocol_threshold(stack: Settings) -> None:
    """The API enqueues, a Celery worker process scores (SQLite + local broker, PostgreSQL +
    Redis): the same image under two protocols, two verdicts."""
    set_threshold(stack, 0.5)
    put(stack, 0.0, protocol="t1 mprage")
    put(stack, 1.0, protocol="t2 tse")
    headers = auth(new_key(stack, "scanner"))
    with app_client(stack) as client:
        ids = [
            upload(client, headers, header_dicom(f"1.2.3.9.{n}", protocol=protocol))
            for n, protocol in enumerate(("T1_MPRAGE", "T2_TSE"))
        ]
        deadline, verdicts = time.monotonic() + 120, {}
        while len(verdicts) < 2 and time.monotonic() < deadline:
            for series_id in ids:
                body = client.get(f"/api/v1/series/{series_id}", headers=headers).json()
                if body["status"] in ("done", "failed"):
                    verdicts[series_id] = body["verdict"]
            time.sleep(0.3)
    assert len(verdicts) == 2, worker_log(stack).read_text()[-3000:]
    t1, t2 = (verdicts[i] for i in ids)
    assert (t1["label"], t1["threshold"], t1["threshold_protocol"]) == (
        "artifact",
        0.0,
        "t1 mprage",
    )
    assert (t2["label"], t2["threshold"], t2["threshold_protocol"]) == ("clean", 1.0, "t2 tse")


def test_without_a_matching_row_the_model_threshold_applies(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 0.0)
    put(settings, 1.0, protocol="flair")
    series_id = upload(client, scanner, header_dicom("1.2.3.4.3", protocol="t1 mprage"))
    assert analyse(settings, series_id) == "done"
    verdict = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["verdict"]
    assert (verdict["label"], verdict["threshold"]) == ("artifact", 0.0)
    assert verdict["threshold_source"] == "model" and verdict["threshold_protocol"] is None


def test_a_changed_threshold_updates_the_verdict_when_the_series_is_analysed_again(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 1.0)
    series_id = upload(client, scanner, header_dicom("1.2.3.4.4", protocol="dwi"))
    assert analyse(settings, series_id) == "done"
    put(settings, 0.0, scanner="mr east 1")
    assert analyse(settings, series_id) == "done"
    verdict = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["verdict"]
    assert (verdict["label"], verdict["threshold_source"]) == ("artifact", "scanner")


def _series(**header: str) -> Series:
    return Series(series_uid="x", **header)


def test_the_most_specific_row_applies(settings: Settings) -> None:
    series = _series(
        station_name="MR-EAST-1",
        scanner="Prisma",
        manufacturer_model="Prisma",
        protocol_name="t1_mprage",
        protocol="T1 MPRAGE sag",
        series_description="T1 MPRAGE sag",
    )
    ids = {
        "scanner+protocol": put(settings, 0.1, scanner="mr east 1", protocol="t1 mprage"),
        "protocol": put(settings, 0.2, protocol="T1-MPRAGE"),
        "scanner": put(settings, 0.3, scanner="MR_EAST_1"),
    }
    put(settings, 0.9, scanner="other", protocol="t1 mprage")  # another scanner: never applies
    put(settings, 0.9, protocol="flair")
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        seen = []
        for source in ("scanner+protocol", "protocol", "scanner"):
            applied = thresholds.applicable(session, series, version)
            seen.append((applied.source, applied.value))
            assert thresholds.remove_threshold(session, ids[source])
        applied = thresholds.applicable(session, series, version)
        seen.append((applied.source, applied.value))
        model = version.threshold
    assert seen == [
        ("scanner+protocol", 0.1),
        ("protocol", 0.2),
        ("scanner", 0.3),
        ("model", model),
    ]


def test_a_station_name_is_preferred_to_the_model_name(settings: Settings) -> None:
    series = _series(station_name="MR-EAST-1", scanner="Prisma", manufacturer_model="Prisma")
    put(settings, 0.4, scanner="prisma")  # every Prisma
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        assert thresholds.applicable(session, series, version).value == 0.4
        thresholds.set_threshold(
            session, scanner="mr-east-1", protocol="", value=0.6, origin="admin", set_by="t"
        )
        assert thresholds.applicable(session, series, version).value == 0.6


@pytest.mark.parametrize(
    ("scanner", "protocol", "value", "words"),
    [("", "", 0.5, "neither"), ("", "t1", 1.5, "[0, 1]")],
)
def test_a_bad_threshold_is_refused_naming_the_problem(
    settings: Settings, scanner: str, protocol: str, value: float, words: str
) -> None:
    with session_scope(settings.database_url) as session, pytest.raises(ValueError, match=words):
        thresholds.set_threshold(
            session, scanner=scanner, protocol=protocol, value=value, origin="admin", set_by="t"
        )


def test_an_admin_sets_lists_replaces_and_removes_thresholds(
    client: TestClient, admin: dict[str, str]
) -> None:
    url = "/api/v1/thresholds"
    r = client.put(url, json={"protocol": "T1_MPRAGE", "value": 0.7}, headers=admin)
    assert r.status_code == 200, r.text
    row = r.json()
    assert (row["protocol"], row["scanner"], row["set_by"]) == ("t1 mprage", "", "boss")
    again = client.put(url, json={"protocol": "t1 mprage", "value": 0.4}, headers=admin)
    assert again.json()["id"] == r.json()["id"]  # the same (scanner, protocol): replaced
    listed = client.get("/api/v1/thresholds", headers=admin).json()
    assert [(t["protocol"], t["value"]) for t in listed["items"]] == [("t1 mprage", 0.4)]
    assert listed["model_threshold"] is not None
    assert client.delete(f"/api/v1/thresholds/{r.json()['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/thresholds", headers=admin).json()["items"] == []
    assert client.delete(f"/api/v1/thresholds/{r.json()['id']}", headers=admin).status_code == 404


def test_a_threshold_without_scanner_or_protocol_is_422(
    client: TestClient, admin: dict[str, str]
) -> None:
    r = client.put("/api/v1/thresholds", json={"value": 0.7}, headers=admin)
    assert r.status_code == 422 and "neither" in r.json()["detail"]


@pytest.mark.parametrize("role", ["scanner", "radiographer"])
def test_only_admin_keys_may_read_or_change_thresholds(
    client: TestClient, settings: Settings, role: str
) -> None:
    row = put(settings, 0.7, protocol="t1")
    headers = auth(new_key(settings, role))
    assert client.get("/api/v1/thresholds", headers=headers).status_code == 403
    body = {"protocol": "t1", "value": 0.1}
    assert client.put("/api/v1/thresholds", json=body, headers=headers).status_code == 403
    assert client.delete(f"/api/v1/thresholds/{row}", headers=headers).status_code == 403
    with session_scope(settings.database_url) as session:
        assert [t.value for t in thresholds.list_thresholds(session)] == [0.7]
