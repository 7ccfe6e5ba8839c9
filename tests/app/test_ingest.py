from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import get_engine, session_scope
from tests.app.conftest import app_client, auth, backend_settings, new_key
from tests.utils.dicomweb import sr_dataset, to_bytes
from tests.utils.service import dicom_bytes, png_bytes, series_files, zip_bytes
from tests.utils.sql import count_starting, statements_sent


def _count(settings: Settings, model: type) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_series_upload_is_accepted_with_a_status_url(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    r = client.post("/api/v1/series", files=series_files(3), headers=scanner)
    assert r.status_code == 202
    body = r.json()
    assert body["status_url"] == f"/api/v1/series/{body['series_id']}"
    assert _count(settings, Instance) == 3
    assert client.get(body["status_url"], headers=scanner).json()["status"] == "queued"


def test_originals_are_stored_content_addressed(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    client.post("/api/v1/series", files=series_files(2), headers=scanner)
    with session_scope(settings.database_url) as session:
        paths = [i.storage_path for i in session.scalars(select(Instance))]
    for rel in paths:
        stored = settings.storage_dir / rel
        import hashlib

        assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name.split(".")[0]


def test_resent_instances_are_not_duplicated(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    files = series_files(2)
    first = client.post("/api/v1/series", files=files, headers=scanner).json()
    again = client.post("/api/v1/series", files=files, headers=scanner).json()
    assert again["series_id"] == first["series_id"] and again["new_instances"] == 0
    assert _count(settings, Instance) == 2


def test_a_sop_instance_uid_twice_in_one_upload_is_stored_once(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    uid, sop = "1.2.3.11", "1.2.3.11.1"
    first, other_bytes = (dicom_bytes(series_uid=uid, instance=n, sop_uid=sop) for n in (1, 2))
    files = [
        ("files", (f"{i}.dcm", data, "application/dicom"))
        for i, data in enumerate((first, other_bytes))
    ]
    files += series_files(1, series_uid=uid)  # and one new instance
    r = client.post("/api/v1/series", files=files, headers=scanner)
    assert r.status_code == 202 and r.json()["new_instances"] == 2
    with session_scope(settings.database_url) as session:
        assert (
            session.scalar(select(Instance.instance_number).where(Instance.sop_instance_uid == sop))
            == 1
        )


def test_an_upload_reaches_postgresql_in_one_insert_of_instances(
    tmp_path: Path, checkpoint: Path
) -> None:
    with (
        backend_settings("postgresql", tmp_path / "data", checkpoint) as settings,
        app_client(settings) as client,
    ):
        headers = auth(new_key(settings, "scanner"))
        with statements_sent(get_engine(settings.database_url)) as statements:
            r = client.post("/api/v1/series", files=series_files(4), headers=headers)
    assert r.status_code == 202 and r.json()["new_instances"] == 4
    # not one of each per file
    assert count_starting(statements, "INSERT INTO instance ") == 1
    assert count_starting(statements, "SELECT instance.") == 1


def test_png_series_and_zip_of_pngs_are_accepted(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    archive = zip_bytes({"a/1.png": png_bytes(), "a/2.png": png_bytes() + b"", "__MACOSX/x": b""})
    r = client.post(
        "/api/v1/series", files=[("files", ("s.zip", archive, "application/zip"))], headers=scanner
    )
    assert r.status_code == 202, r.text
    assert _count(settings, Instance) == 1  # the two PNGs have the same bytes


def test_non_image_objects_are_skipped_per_instance_with_a_reason(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    sr = sr_dataset(series_uid="1.2.826.0.1.3680043.8.498.7")
    files = [*series_files(2), ("files", ("report.dcm", to_bytes(sr), "application/dicom"))]
    r = client.post("/api/v1/series", files=files, headers=scanner)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["new_instances"] == 2
    [skipped] = body["skipped"]
    assert skipped["file"] == "report.dcm"
    assert skipped["sop_instance_uid"] == str(sr.SOPInstanceUID)
    assert "Basic Text SR" in skipped["reason"] and "not an image" in skipped["reason"]
    assert _count(settings, Instance) == 2  # the SR was not stored


def test_an_upload_of_only_non_image_objects_is_refused(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    files = [("files", ("report.dcm", to_bytes(sr_dataset()), "application/dicom"))]
    for endpoint in ("/api/v1/series", "/api/v1/slices"):
        r = client.post(endpoint, files=files, headers=scanner)
        assert r.status_code == 422, r.text
        assert "report.dcm" in r.json()["detail"] and "not an image" in r.json()["detail"]
    assert _count(settings, Series) == 0 and _count(settings, Instance) == 0


def test_slices_of_one_dicom_series_join_it(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    ids = set()
    for n in (1, 2):
        one = [
            (
                "files",
                (f"{n}.dcm", dicom_bytes(series_uid="1.2.3.9", instance=n), "application/dicom"),
            )
        ]
        r = client.post("/api/v1/slices", files=one, headers=scanner)
        assert r.status_code == 202, r.text
        ids.add(r.json()["series_id"])
    assert len(ids) == 1 and _count(settings, Series) == 1
    assert (
        client.get(f"/api/v1/series/{ids.pop()}", headers=scanner).json()["status"] == "receiving"
    )


def test_a_resent_slice_answers_the_id_of_the_instance_already_stored(
    client: TestClient, scanner: dict[str, str]
) -> None:
    data = dicom_bytes(series_uid="1.2.3.10", instance=1)
    answers = [
        client.post(
            "/api/v1/slices",
            files=[("files", ("1.dcm", data, "application/dicom"))],
            headers=scanner,
        ).json()
        for _ in range(2)
    ]
    assert [a["new_instances"] for a in answers] == [1, 0]
    assert answers[1]["instance_ids"] == answers[0]["instance_ids"] and answers[0]["instance_ids"]


def test_the_api_process_never_imports_torch() -> None:
    code = "import sys, app.api.main; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
