"""The series verdict as DICOM: the Structured Report (served at ``/series/{id}/sr``, opened by
DCMTK's ``dsrdump``) and the heatmap secondary captures, built from a real scored series."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from sqlalchemy import select

from app.config import Settings
from app.db.models import InstanceVerdict, SeriesVerdict
from app.db.session import session_scope
from app.pacs.capture import build_captures, patient_orientation
from app.pacs.report import load_report
from tests.app.conftest import auth, new_key, set_threshold
from tests.utils.service import png_bytes, scored_series

IQMS = {"snr": 12.5, "spike": 3.25, "efc": 0.42}


def _walk(items: pydicom.Sequence) -> list[pydicom.Dataset]:
    """Every content item of an SR content sequence, depth first."""
    out = []
    for item in items:
        out.append(item)
        out += _walk(item.get("ContentSequence", []))
    return out


def _meaning(item: pydicom.Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def _flag_all_with_iqms(settings: Settings, series_id: int) -> None:
    """Every slice flagged (threshold 0 before scoring) and a known IQM panel per slice."""
    with session_scope(settings.database_url) as session:
        for verdict in session.scalars(select(InstanceVerdict)):
            verdict.iqms = dict(IQMS)
        assert session.scalar(select(SeriesVerdict).where(SeriesVerdict.series_id == series_id))


@pytest.fixture
def flagged(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> tuple[int, list[int]]:
    """A scored DICOM series of 3 slices, all flagged, with IQMs."""
    set_threshold(settings, 0.0)
    series_id, instance_ids = scored_series(client, settings, scanner, n=3)
    _flag_all_with_iqms(settings, series_id)
    return series_id, instance_ids


def test_the_sr_carries_verdict_flagged_slices_model_and_iqms(
    client: TestClient,
    settings: Settings,
    scanner: dict[str, str],
    flagged: tuple[int, list[int]],
) -> None:
    series_id, instance_ids = flagged
    r = client.get(f"/api/v1/series/{series_id}/sr", headers=scanner)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom"
    sr = pydicom.dcmread(io.BytesIO(r.content))
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
    assert sr.PatientID == "PID-SECRET-42" and sr.StudyInstanceUID.endswith(".7.0")
    items = _walk(sr.ContentSequence)
    [verdict] = [i for i in items[:9] if _meaning(i) == "Image quality verdict"]
    assert verdict.ConceptCodeSequence[0].CodeMeaning == "Artifact"
    series = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    sources = {
        str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for i in items
        if _meaning(i) == "Flagged slice"
    }
    with session_scope(settings.database_url) as session:
        from app.db.models import Instance

        uids = {
            session.get(Instance, i).sop_instance_uid  # type: ignore[union-attr]
            for i in instance_ids
        }
    assert sources == uids and len(uids) == 3
    versions = [i.TextValue for i in items if _meaning(i) == "Algorithm Version"]
    assert versions == [series["model_version"]["name"]]
    snr = [i for i in items if _meaning(i) == "signal-to-noise"]
    assert len(snr) == 3 and float(snr[0].MeasuredValueSequence[0].NumericValue) == 12.5
    [probability] = [i for i in items[:9] if _meaning(i) == "Artifact probability"]
    assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(
        series["verdict"]["probability"], abs=1e-5
    )


def test_dsrdump_opens_the_sr_and_lists_the_verdict(
    client: TestClient, scanner: dict[str, str], flagged: tuple[int, list[int]], tmp_path: Path
) -> None:
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK's dsrdump is not installed (make dicom-tools installs dcmtk)")
    path = tmp_path / "sr.dcm"
    path.write_bytes(client.get(f"/api/v1/series/{flagged[0]}/sr", headers=scanner).content)
    run = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Comprehensive SR Document" in run.stdout
    assert '"Image quality verdict")=(AMAQC-ARTIFACT,99AMAQC,"Artifact")' in run.stdout
    assert run.stdout.count('"Flagged slice")=(MR image,)') == 3
    assert "Algorithm Version" in run.stdout and '"signal-to-noise")="12.5"' in run.stdout
    assert "Doe^Jane" in run.stdout  # filed under the source images' patient
    assert "warning" not in run.stderr.lower() and "error" not in run.stderr.lower()


def test_the_same_verdict_is_the_same_sr_and_a_changed_one_a_new_one(
    client: TestClient,
    settings: Settings,
    scanner: dict[str, str],
    flagged: tuple[int, list[int]],
) -> None:
    url = f"/api/v1/series/{flagged[0]}/sr"
    first = pydicom.dcmread(io.BytesIO(client.get(url, headers=scanner).content))
    again = pydicom.dcmread(io.BytesIO(client.get(url, headers=scanner).content))
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    with session_scope(settings.database_url) as session:
        verdict = session.scalars(select(SeriesVerdict)).one()
        verdict.label, verdict.flagged = 0, []
    changed = pydicom.dcmread(io.BytesIO(client.get(url, headers=scanner).content))
    assert changed.SOPInstanceUID != first.SOPInstanceUID
    assert "Artifact-free" in str(changed.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning)


def test_the_sr_is_read_with_the_series_rights(
    client: TestClient, settings: Settings, flagged: tuple[int, list[int]]
) -> None:
    url = f"/api/v1/series/{flagged[0]}/sr"
    other = auth(new_key(settings, "scanner", "scanner 2"))
    assert client.get(url, headers=other).status_code == 404
    assert client.get(url).status_code == 401
    reader = auth(new_key(settings, "radiographer"))
    assert client.get(url, headers=reader).status_code == 200


def test_no_sr_before_the_verdict_nor_for_a_series_without_dicom(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    from app.worker.inference import analyse

    files = [("files", (f"p{i}.png", png_bytes(), "image/png")) for i in range(2)]
    series_id = client.post("/api/v1/series", files=files, headers=scanner).json()["series_id"]
    r = client.get(f"/api/v1/series/{series_id}/sr", headers=scanner)
    assert r.status_code == 404 and "no verdict yet" in r.json()["detail"]
    assert analyse(settings, series_id) == "done"
    r = client.get(f"/api/v1/series/{series_id}/sr", headers=scanner)
    assert r.status_code == 404 and "no DICOM source images" in r.json()["detail"]


def test_a_heatmap_capture_per_flagged_slice_shows_the_patch_map(
    settings: Settings, flagged: tuple[int, list[int]]
) -> None:
    series_id, _ = flagged
    with session_scope(settings.database_url) as session:
        report = load_report(session, settings, series_id)
    captures = build_captures(settings, report)
    assert len(captures) == 3
    sources = [str(c.SourceImageSequence[0].ReferencedSOPInstanceUID) for c in captures]
    assert sources == [s.sop_instance_uid for s in report.slices]
    first = captures[0]
    assert first.SOPClassUID == SecondaryCaptureImageStorage and first.PatientID == "PID-SECRET-42"
    assert first.StudyInstanceUID == report.headers[0].StudyInstanceUID
    rgb = first.pixel_array
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    # the patch map is in red: where probabilities are high, red exceeds green
    assert (rgb[..., 0].astype(int) - rgb[..., 1]).mean() > 10
    assert len({c.SOPInstanceUID for c in captures}) == 3


def test_a_clean_verdict_has_no_captures(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 1.01)
    series_id, _ = scored_series(client, settings, scanner, n=2)
    with session_scope(settings.database_url) as session:
        report = load_report(session, settings, series_id)
    assert report.label == 0 and build_captures(settings, report) == []


def test_capture_orientation_follows_the_source_image() -> None:
    header = pydicom.Dataset()
    header.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal: rows run A->P, cols H->F
    assert patient_orientation(header) == ("P", "F")
    assert patient_orientation(pydicom.Dataset()) == ("L", "P")
