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


# --- the acquisition family (model/acquisition.py) -----------------------------------------


def _acquisition(client: TestClient, headers: dict[str, str], series_id: int) -> str | None:
    body = client.get(f"/api/v1/series/{series_id}", headers=headers).json()
    return body["acquisition"]  # type: ignore[no-any-return]


def _nifti_bytes() -> bytes:
    import nibabel as nib
    import numpy as np

    from tests.utils.images import phantom

    volume = np.stack([phantom(64, seed=s) for s in (5, 6)], axis=-1)
    return bytes(nib.Nifti1Image((volume * 1000).astype(np.int16), np.eye(4)).to_bytes())


def test_a_dicom_series_is_filed_under_the_family_its_header_names(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    from tests.utils.protocols import header_dicom, upload

    epi = upload(client, scanner, header_dicom("1.2.3.50.1", protocol="dti", ScanningSequence="EP"))
    mprage = header_dicom("1.2.3.50.2", protocol="t1_mprage", ScanningSequence=["GR", "IR"])
    plain = header_dicom("1.2.3.50.3", protocol="t1_mprage")  # no sequence tags, no EPI word
    assert _acquisition(client, scanner, epi) == "epi"
    assert _acquisition(client, scanner, upload(client, scanner, mprage)) == "non_epi"
    assert _acquisition(client, scanner, upload(client, scanner, plain)) is None
    with session_scope(settings.database_url) as session:
        assert session.get(Series, epi).acquisition == "epi"  # type: ignore[union-attr]


def test_an_upload_without_a_header_takes_its_family_from_the_protocol_field(
    client: TestClient, scanner: dict[str, str]
) -> None:
    nifti = [("files", ("run.nii.gz", _nifti_bytes(), "application/octet-stream"))]
    png = [("files", ("a.png", png_bytes(), "image/png"))]
    found = {}
    for name, files, form in [
        ("bold", nifti, {"protocol": "ep2d_bold"}),
        ("no protocol", nifti, {}),
        ("t1", png, {"protocol": "T1 epilepsy"}),  # "epilepsy" is no EPI word
        ("png dwi", png, {"protocol": "DWI b1000"}),
    ]:
        r = client.post("/api/v1/series", files=files, data=form, headers=scanner)
        assert r.status_code == 202, r.text
        found[name] = _acquisition(client, scanner, r.json()["series_id"])
    assert found == {"bold": "epi", "no protocol": None, "t1": None, "png dwi": "epi"}


def test_an_epi_word_in_the_protocol_field_beats_a_spin_echo_header(
    client: TestClient, scanner: dict[str, str]
) -> None:
    """Some vendors write Scanning Sequence SE alone for a spin-echo EPI: the form's protocol
    is a name the series carries, as the header's ProtocolName is."""
    from tests.utils.protocols import header_dicom

    data = header_dicom("1.2.3.52.1", protocol="localizer", ScanningSequence="SE")
    files = [("files", ("a.dcm", data, "application/dicom"))]
    r = client.post("/api/v1/series", files=files, data={"protocol": "ep2d_diff"}, headers=scanner)
    assert r.status_code == 202, r.text
    assert _acquisition(client, scanner, r.json()["series_id"]) == "epi"
    again = header_dicom("1.2.3.52.2", protocol="localizer", ScanningSequence="SE")
    files = [("files", ("a.dcm", again, "application/dicom"))]
    r = client.post("/api/v1/series", files=files, data={"protocol": "t2 tse"}, headers=scanner)
    assert _acquisition(client, scanner, r.json()["series_id"]) == "non_epi"


def test_a_stow_rs_series_is_filed_under_its_family(
    client: TestClient, scanner: dict[str, str]
) -> None:
    from tests.utils.dicomweb import STUDIES, stow_body, stow_headers
    from tests.utils.protocols import header_dicom

    parts = [header_dicom("1.2.3.53.1", protocol="resting state", EchoPlanarPulseSequence="YES")]
    r = client.post(STUDIES, content=stow_body(parts), headers=stow_headers(scanner))
    assert r.status_code == 200, r.text
    url = r.json()["00081199"]["Value"][0]["00091001"]["Value"][0]
    assert client.get(url, headers=scanner).json()["acquisition"] == "epi"
