"""No log line names the patient (issue 20, DESIGN.md "Patient identifiers are never logged").

Series whose DICOM headers carry known PatientName / PatientID values -- valid ones, values
that break their VR's rules (pydicom logs a warning quoting an invalid value), and a damaged
header whose UI value runs into the patient module -- are ingested through every route that
takes DICOM (multipart, one slice, STOW-RS), analysed by the worker's code, and read back as a
radiographer (JSON and the web page that shows the patient). Every log record of every logger
at DEBUG, message and traceback, must be free of the identifiers.
"""

from __future__ import annotations

import io
import logging
import warnings

import pytest
from fastapi.testclient import TestClient

from app import keep_patients_out_of_logs
from app.config import Settings
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key, sign_in
from tests.utils.dicomweb import stow_body, stow_headers
from tests.utils.images import dicom_dataset, phantom, set_pixels_12bit

NAME, PATIENT_ID = "Zyxwvut^Qwerty", "PIDSECRET7781"
#: what must never be in a log line: each identifier and its parts
SECRETS = ("Zyxwvut", "Qwerty", PATIENT_ID)


def _dicom(uid: str, instance: int, *, name: str = NAME, patient_id: str = PATIENT_ID) -> bytes:
    ds = dicom_dataset(series_uid=uid, instance=instance)
    ds.PatientName, ds.PatientID = name, patient_id
    ds.PatientBirthDate = "19800101"
    set_pixels_12bit(ds, phantom(64, seed=instance))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _overrun(data: bytes) -> bytes:
    """(0008,0018) SOP Instance UID's length made to swallow the elements after it (the
    patient's among them): pydicom warns, quoting the value."""
    buf = bytearray(data)
    at = buf.index(b"\x08\x00\x18\x00UI")
    buf[at + 6 : at + 8] = (400).to_bytes(2, "little")
    return bytes(buf)


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/dicom")) for name, data in items]


def _ingest_analyse_and_read(web: TestClient, settings: Settings) -> None:
    scanner = auth(new_key(settings, "scanner", "mr1"))
    base = "1.2.826.0.1.3680043.8.498.4"
    uploads = [
        (
            "/api/v1/series",
            _files(("a.dcm", _dicom(f"{base}1", 1)), ("b.dcm", _dicom(f"{base}1", 2))),
        ),
        # invalid for their VRs: a PN over 64 characters per group, an LO over 64 characters
        (
            "/api/v1/series",
            _files(("c.dcm", _dicom(f"{base}2", 1, name=NAME * 6, patient_id=PATIENT_ID * 6))),
        ),
        ("/api/v1/slices", _files(("d.dcm", _dicom(f"{base}3", 1, patient_id=PATIENT_ID + "\\x")))),
        ("/api/v1/series", _files(("e.dcm", _overrun(_dicom(f"{base}4", 1))))),  # refused
    ]
    series_ids = []
    for route, files in uploads:
        r = web.post(route, files=files, headers=scanner)
        assert r.status_code in (202, 422), r.text
        if r.status_code == 202:
            series_ids.append(r.json()["series_id"])
    stow = web.post(
        "/dicomweb/studies",
        content=stow_body([_dicom(f"{base}5", 1), _overrun(_dicom(f"{base}5", 2))]),
        headers=stow_headers(scanner),
    )
    assert stow.status_code in (200, 202), stow.text
    assert len(series_ids) == 3
    for series_id in series_ids:
        analyse(settings, series_id)
    reader = new_key(settings, "radiographer", "reader")
    shown = [web.get(f"/api/v1/series/{i}", headers=auth(reader)).text for i in series_ids]
    sign_in(web, reader)
    shown += [web.get(f"/series/{i}").text for i in series_ids]
    assert any(PATIENT_ID in text for text in shown)  # the identifiers were read, and shown


def test_no_log_record_or_warning_names_the_patient(
    web: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Log records of every logger at DEBUG, and the Python warnings that the filters in force
    let through (they go to stderr)."""
    caplog.set_level(logging.DEBUG)  # every logger, every level
    with warnings.catch_warnings(record=True) as emitted:
        # the service has app's warning filter from its start; pytest dropped it with the
        # warning filters of the collection (which imported app): set it again
        keep_patients_out_of_logs()
        _ingest_analyse_and_read(web, settings)
    records = caplog.records
    assert records, "nothing was logged: the check would prove nothing"
    leaks = [
        f"{r.name} {r.levelname}: {r.getMessage()[:200]}"
        for r in records
        if any(s in r.getMessage() or s in (r.exc_text or "") for s in SECRETS)
    ]
    leaks += [
        f"warning {w.filename}:{w.lineno}: {str(w.message)[:200]}"
        for w in emitted
        if any(s in str(w.message) for s in SECRETS)
    ]
    assert not leaks, leaks
