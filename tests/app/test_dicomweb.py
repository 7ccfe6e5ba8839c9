"""STOW-RS ``POST /dicomweb/studies``: status codes, the PS3.18 reply, per-instance refusals."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import MPEG2MPML
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import session_scope
from tests.utils.dicomweb import (
    BOUNDARY,
    STUDIES,
    as_dataset,
    sr_dataset,
    stow_body,
    stow_headers,
    to_bytes,
    with_transfer_syntax,
)
from tests.utils.service import dicom_bytes

SERIES = "1.2.826.0.1.3680043.8.498.2001"


def _count(settings: Settings, model: type) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _items(body: dict, tag: str) -> list[dict]:
    return body.get(tag, {}).get("Value", [])


def _uid(item: dict, tag: str) -> str:
    return item[tag]["Value"][0]


def _sop_uid(data: bytes) -> str:
    return str(as_dataset(data).SOPInstanceUID)


def _post(client: TestClient, auth: dict[str, str], parts: list[bytes], url: str = STUDIES):
    return client.post(url, content=stow_body(parts), headers=stow_headers(auth))


def test_all_instances_stored_is_200_with_the_referenced_sop_sequence(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    parts = [dicom_bytes(series_uid=SERIES, instance=i) for i in (1, 2)]
    r = _post(client, scanner, parts)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    body = r.json()
    assert "00081190" in body and "00081198" not in body
    referenced = _items(body, "00081199")
    assert [_uid(i, "00081155") for i in referenced] == [_sop_uid(p) for p in parts]
    assert {_uid(i, "00081150") for i in referenced} == {"1.2.840.10008.5.1.4.1.1.4"}
    assert _count(settings, Instance) == 2


def test_referenced_items_carry_the_status_url_of_their_series(
    client: TestClient, scanner: dict[str, str]
) -> None:
    body = _post(client, scanner, [dicom_bytes(series_uid=SERIES)]).json()
    url = _uid(_items(body, "00081199")[0], "00091001")
    series = client.get(url, headers=scanner)
    assert series.status_code == 200 and series.json()["status"] == "queued"


def test_an_sr_instance_among_images_is_202_with_one_failed_item_naming_it(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    sr = to_bytes(sr_dataset())
    r = _post(client, scanner, [dicom_bytes(series_uid=SERIES), sr])
    assert r.status_code == 202, r.text
    (failed,) = _items(r.json(), "00081198")
    assert _uid(failed, "00081155") == _sop_uid(sr)
    assert failed["00081197"]["Value"] == [0x0122]
    assert "not an image" in _uid(failed, "00091002")
    assert len(_items(r.json(), "00081199")) == 1 and _count(settings, Instance) == 1


def test_no_instance_stored_is_409(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    r = _post(client, scanner, [to_bytes(sr_dataset())])
    assert r.status_code == 409 and "00081199" not in r.json()
    assert _count(settings, Series) == 0


@pytest.mark.parametrize(
    ("make", "reason", "words"),
    [
        (lambda: dicom_bytes(pixels=False), 0xA900, "no pixel data"),
        (lambda: dicom_bytes()[:-3000], 0xC000, "part 1"),
        (lambda: with_transfer_syntax(MPEG2MPML), 0xC122, "MPEG2"),
    ],
    ids=["no pixel data", "truncated", "unsupported transfer syntax"],
)
def test_a_bad_instance_is_refused_with_its_failure_reason(
    client: TestClient, scanner: dict[str, str], make, reason: int, words: str
) -> None:
    r = _post(client, scanner, [make()])
    assert r.status_code == 409, r.text
    (failed,) = _items(r.json(), "00081198")
    assert failed["00081197"]["Value"] == [reason]
    assert words in _uid(failed, "00091002")


def test_a_part_that_is_not_dicom_is_an_other_failure(
    client: TestClient, scanner: dict[str, str]
) -> None:
    r = _post(client, scanner, [b"hello, not DICOM", dicom_bytes(series_uid=SERIES)])
    assert r.status_code == 202
    (other,) = _items(r.json(), "0008119A")
    assert other["00081197"]["Value"] == [0xC000] and "part 1" in _uid(other, "00091002")


def test_each_part_is_parsed_once_and_the_model_looked_up_once(
    client: TestClient, settings: Settings, scanner: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: a STOW-RS part's header comes from the dataset that is decoded (one
    ``pydicom.dcmread`` a part, was two), and the detector's smallest side is looked up once a
    request, not once a part. A refused part still says why (the parametrized test above)."""
    import pydicom

    from app.db import repo

    parses: list[str] = []
    lookups: list[str] = []
    real_read, real_lookup = pydicom.dcmread, repo.active_model_version

    def read(*args: Any, **kwargs: Any) -> Any:
        parses.append(str(args[0] if args else kwargs.get("fp")))
        return real_read(*args, **kwargs)

    def lookup(*args: Any, **kwargs: Any) -> Any:
        lookups.append("active_model_version")
        return real_lookup(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", read)
    monkeypatch.setattr(repo, "active_model_version", lookup)
    parts = [dicom_bytes(series_uid=SERIES, instance=i) for i in (1, 2, 3)]
    r = _post(client, scanner, parts)
    assert r.status_code == 200, r.text
    # once a part, and the first one's header once more for the new series' context
    # (app/ingest/context.py)
    assert len(parses) == 3 + 1, parses
    assert len(lookups) == 1
    assert _count(settings, Instance) == 3


def test_an_instance_of_another_study_is_refused_on_a_study_url(
    client: TestClient, scanner: dict[str, str]
) -> None:
    good = dicom_bytes(series_uid=SERIES)  # its study is SERIES + ".0"
    other = dicom_bytes(series_uid="1.2.3.4.5")
    r = _post(client, scanner, [good, other], url=f"{STUDIES}/{SERIES}.0")
    assert r.status_code == 202
    (failed,) = _items(r.json(), "00081198")
    assert _uid(failed, "00081155") == _sop_uid(other) and failed["00081197"]["Value"] == [0xA901]


def test_instances_are_grouped_into_series_by_series_instance_uid(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    parts = [dicom_bytes(series_uid=uid, instance=1) for uid in ("1.2.3.1", "1.2.3.2")]
    body = _post(client, scanner, parts).json()
    urls = {_uid(i, "00091001") for i in _items(body, "00081199")}
    assert len(urls) == 2 and _count(settings, Series) == 2


def test_a_resent_instance_is_stored_once_and_still_referenced(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    part = dicom_bytes(series_uid=SERIES)
    _post(client, scanner, [part])
    r = _post(client, scanner, [part])
    assert r.status_code == 200
    assert [_uid(i, "00081155") for i in _items(r.json(), "00081199")] == [_sop_uid(part)]
    assert _count(settings, Instance) == 1


def test_a_wrong_content_type_is_415(client: TestClient, scanner: dict[str, str]) -> None:
    r = client.post(STUDIES, files={"files": ("a.dcm", dicom_bytes())}, headers=scanner)
    assert r.status_code == 415 and "multipart/related" in r.json()["detail"]


def test_a_root_type_other_than_application_dicom_is_415(
    client: TestClient, scanner: dict[str, str]
) -> None:
    headers = {
        **scanner,
        "Content-Type": f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
    }
    r = client.post(STUDIES, content=stow_body([dicom_bytes()]), headers=headers)
    assert r.status_code == 415 and "application/dicom+json" in r.json()["detail"]


def test_a_content_type_without_boundary_is_400(
    client: TestClient, scanner: dict[str, str]
) -> None:
    headers = {**scanner, "Content-Type": 'multipart/related; type="application/dicom"'}
    r = client.post(STUDIES, content=stow_body([dicom_bytes()]), headers=headers)
    assert r.status_code == 400 and "boundary" in r.json()["detail"]


def test_a_body_cut_before_its_closing_boundary_is_400(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    body = stow_body([dicom_bytes()])[:-200]
    r = client.post(STUDIES, content=body, headers=stow_headers(scanner))
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"]
    assert _count(settings, Instance) == 0


def test_an_unquoted_boundary_is_accepted(client: TestClient, scanner: dict[str, str]) -> None:
    r = client.post(
        STUDIES,
        content=stow_body([dicom_bytes()]),
        headers=stow_headers(scanner, quoted=False),
    )
    assert r.status_code == 200, r.text


def test_a_chunked_body_over_the_upload_limit_is_413(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for _ in range(8):
            yield b"\0" * (1024 * 1024)  # 8 MB against the fixture's 2 MB limit

    r = client.post(STUDIES, content=chunks(), headers=stow_headers(scanner))
    assert r.status_code == 413 and "AMAQC_MAX_UPLOAD_MB" in r.json()["detail"]
    assert _count(settings, Instance) == 0


def test_no_key_is_401(client: TestClient) -> None:
    r = _post(client, {}, [dicom_bytes()])
    assert r.status_code == 401


def test_a_radiographer_key_is_403(client: TestClient, radiographer: dict[str, str]) -> None:
    r = _post(client, radiographer, [dicom_bytes()])
    assert r.status_code == 403 and "scanner or admin" in r.json()["detail"]


def test_stow_never_logs_patient_identifiers(
    client: TestClient, scanner: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _post(client, scanner, [dicom_bytes(series_uid=SERIES), to_bytes(sr_dataset())])
    assert caplog.records, "expected some log records"
    assert "Doe^Jane" not in caplog.text and "PID-SECRET-42" not in caplog.text
