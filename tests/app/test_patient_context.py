"""Patient and study context from the DICOM header (issue 22 item 3): stored at ingest, shown
to radiographer and admin keys (API and pages), never to a scanner key, names hidden with
``AMAQC_HIDE_PATIENT_NAMES``, never logged; the scanner named from the header's
ManufacturerModelName, else StationName, else Manufacturer."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings, get_settings
from app.db.models import Series, Study
from app.db.session import session_scope
from app.dicom_header import HeaderContext
from tests.app.conftest import new_key, sign_in
from tests.utils.service import png_bytes
from tests.utils.ui import tagged_series_files

#: the header of the tests' series (tests.utils.images.dicom_dataset adds PatientName
#: "Doe^Jane" and PatientID "PID-SECRET-42")
TAGS: dict[str, Any] = {
    "AccessionNumber": "ACC-7781",
    "StudyDescription": "MR head w/o contrast",
    "ProtocolName": "t2_tse_tra_p2",
    "StationName": "MR-3T-A",
    "Manufacturer": "Siemens",
    "ManufacturerModelName": "Prisma",
    "AcquisitionDateTime": "20260304134501",
}
PATIENT = ("PID-SECRET-42", "Doe, Jane", "Doe^Jane", "ACC-7781")


def _upload(client: TestClient, key: dict[str, str], uid: str, **tags: Any) -> int:
    r = client.post("/api/v1/series", files=tagged_series_files(2, uid, **tags), headers=key)
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


def test_the_header_context_is_stored_with_the_series_and_its_study(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, "1.2.22.3.1", **TAGS)
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None and series.study_id is not None
        study = session.get(Study, series.study_id)
        assert study is not None
        assert (study.patient_id, study.patient_name) == ("PID-SECRET-42", "Doe, Jane")
        assert study.accession_number == "ACC-7781"
        assert study.study_description == "MR head w/o contrast"
        assert (series.series_description, series.protocol_name) == ("t2_tse_tra", "t2_tse_tra_p2")
        assert (series.station_name, series.manufacturer) == ("MR-3T-A", "Siemens")
        assert series.manufacturer_model == "Prisma"
        assert series.acquired_at == "2026-03-04T13:45:01"
        assert series.scanner == "Prisma"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"ManufacturerModelName": "Prisma", "StationName": "MR-3T-A"}, "Prisma"),
        ({"StationName": "MR-3T-A", "Manufacturer": "Siemens"}, "MR-3T-A"),
        ({"Manufacturer": "GE MEDICAL SYSTEMS"}, "GE MEDICAL SYSTEMS"),
        ({}, None),
    ],
)
def test_the_scanner_is_the_model_else_the_station_else_the_manufacturer(
    client: TestClient,
    settings: Settings,
    scanner: dict[str, str],
    tags: dict[str, str],
    expected: str | None,
) -> None:
    series_id = _upload(client, scanner, "1.2.22.3.2", **tags)
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None and series.scanner == expected


def test_the_header_context_names_the_scanner_in_that_order() -> None:
    assert HeaderContext(station_name="MR-1", manufacturer_model="Prisma").scanner == "Prisma"
    assert HeaderContext(station_name="MR-1", manufacturer="Siemens").scanner == "MR-1"
    assert HeaderContext(manufacturer="Siemens").scanner == "Siemens"
    assert HeaderContext().scanner is None


def test_the_uploads_scanner_field_wins_over_the_header(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series",
        files=tagged_series_files(1, "1.2.22.3.3", **TAGS),
        data={"scanner": "Room 4"},
        headers=scanner,
    )
    with session_scope(settings.database_url) as session:
        series = session.get(Series, r.json()["series_id"])
        assert series is not None and series.scanner == "Room 4"
        assert series.station_name == "MR-3T-A"  # the header's context is kept all the same


def test_a_radiographer_gets_the_context_from_the_api(
    client: TestClient, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, "1.2.22.3.4", **TAGS)
    context = client.get(f"/api/v1/series/{series_id}", headers=radiographer).json()["context"]
    assert context["patient_id"] == "PID-SECRET-42" and context["patient_name"] == "Doe, Jane"
    assert context["accession_number"] == "ACC-7781" and context["names_hidden"] is False
    assert context["acquired_at"] == "2026-03-04T13:45:01"
    assert context["station_name"] == "MR-3T-A" and context["manufacturer_model"] == "Prisma"


def test_a_scanner_key_never_gets_patient_fields(
    client: TestClient, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, "1.2.22.3.5", **TAGS)
    r = client.get(f"/api/v1/series/{series_id}", headers=scanner)
    assert r.status_code == 200 and r.json()["context"] is None
    listed = client.get("/api/v1/series", headers=scanner)
    for body in (r.text, listed.text):
        assert not any(value in body for value in PATIENT), body


def test_an_admin_gets_the_context_too(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, "1.2.22.3.6", **TAGS)
    admin = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
    context = client.get(f"/api/v1/series/{series_id}", headers=admin).json()["context"]
    assert context["patient_id"] == "PID-SECRET-42"


def test_hiding_names_leaves_the_ids(
    client: TestClient, settings: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    from app.api.main import app

    series_id = _upload(client, scanner, "1.2.22.3.7", **TAGS)
    hidden = settings.model_copy(update={"hide_patient_names": True})
    app.dependency_overrides[get_settings] = lambda: hidden
    r = client.get(f"/api/v1/series/{series_id}", headers=radiographer)
    context = r.json()["context"]
    assert context["patient_id"] == "PID-SECRET-42" and context["patient_name"] is None
    assert context["names_hidden"] is True
    assert "Doe" not in r.text


def test_a_series_without_a_dicom_header_has_an_empty_context(
    client: TestClient, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series", files=[("files", ("a.png", png_bytes(), "image/png"))], headers=scanner
    )
    context = client.get(f"/api/v1/series/{r.json()['series_id']}", headers=radiographer).json()[
        "context"
    ]
    assert context is not None and context["patient_id"] is None
    assert context["acquired_at"] is None


def test_the_pages_show_the_context_and_no_log_line_names_the_patient(
    web: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scanner = {"Authorization": f"Bearer {new_key(settings, 'scanner')}"}
    series_id = _upload(web, scanner, "1.2.22.3.8", **TAGS)
    sign_in(web, new_key(settings, "radiographer"))
    worklist = web.get("/").text
    assert "PID-SECRET-42" in worklist and "Doe, Jane" in worklist and "ACC-7781" in worklist
    viewer = web.get(f"/series/{series_id}").text
    assert 'id="patient-id" title="PatientID">PID-SECRET-42<' in viewer
    assert "2026-03-04 13:45:01" in viewer and "Siemens Prisma · station MR-3T-A" in viewer
    assert caplog.records, "expected some log records"
    assert not any(value in caplog.text for value in PATIENT), caplog.text
