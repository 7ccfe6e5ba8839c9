"""Reports into a real PACS: Debian's Orthanc, started by the test with its own configuration on
free ports, checked through its REST API; and the worker sending to Orthanc and ``storescp``."""

from __future__ import annotations

import io
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from sqlalchemy import select

from app.config import Settings
from app.db.models import PacsDelivery
from app.db.session import session_scope
from app.pacs import outbox
from tests.app.conftest import auth, new_key, set_threshold
from tests.app.test_end_to_end import _client, _wait_done
from tests.utils.dicom_nodes import Orthanc, orthanc, storescp
from tests.utils.ports import free_port
from tests.utils.service import scored_series, series_files


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Orthanc]:
    with orthanc(tmp_path / "orthanc") as node:
        yield node


def _rows(settings: Settings) -> list[PacsDelivery]:
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(PacsDelivery).order_by(PacsDelivery.id)))
        session.expunge_all()
    return rows


def _download(pacs: Orthanc, sop_instance_uid: str) -> pydicom.Dataset:
    """The stored file of the instance with this SOP Instance UID, from Orthanc's REST API."""
    [found] = [
        i
        for i in pacs.get("/instances")
        if pacs.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] == sop_instance_uid
    ]
    with urllib.request.urlopen(f"{pacs.url}/instances/{found}/file", timeout=10) as reply:
        return pydicom.dcmread(io.BytesIO(reply.read()))


def test_the_sr_and_heatmap_captures_arrive_in_orthanc(
    client: TestClient, settings: Settings, scanner: dict[str, str], pacs: Orthanc
) -> None:
    set_threshold(settings, 0.0)
    series_id, _ = scored_series(client, settings, scanner, n=2)
    s = settings.model_copy(update={"pacs_destinations": pacs.destination})
    assert outbox.queue_reports(s, series_id) == 1
    assert outbox.deliver(s).sent == 1
    stored = pacs.wait(3)
    classes = sorted(str(t["SOPClassUID"]) for t in stored)
    assert classes == sorted([ComprehensiveSRStorage, *[SecondaryCaptureImageStorage] * 2])
    source = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert {t["PatientID"] for t in stored} == {"PID-SECRET-42"}
    assert {t["StudyInstanceUID"] for t in stored} == {"1.2.826.0.1.3680043.8.498.7.0"}
    [sr_tags] = [t for t in stored if t["Modality"] == "SR"]
    assert sr_tags["SOPInstanceUID"] == _rows(s)[0].sr_uid
    sr = _download(pacs, sr_tags["SOPInstanceUID"])
    verdict = sr.ContentSequence[0]
    assert verdict.ConceptCodeSequence[0].CodeMeaning == "Artifact"
    assert source["verdict"]["label"] == "artifact"
    # Orthanc files the report in the study of the images: one study, one patient
    assert len(pacs.get("/studies")) == 1 and len(pacs.get("/patients")) == 1


def test_a_wrong_called_ae_title_is_rejected_and_kept_for_later(
    client: TestClient, settings: Settings, scanner: dict[str, str], pacs: Orthanc
) -> None:
    series_id, _ = scored_series(client, settings, scanner, n=2)
    wrong = f"NOTORTHANC@127.0.0.1:{pacs.dicom_port}"
    s = settings.model_copy(update={"pacs_destinations": wrong})
    outbox.queue_reports(s, series_id)
    assert outbox.deliver(s).failed == 1
    [row] = _rows(s)
    assert row.status == "pending" and "association rejected" in (row.last_error or "")
    assert pacs.get("/instances") == []


@pytest.fixture
def scp_port() -> int:
    return free_port()


@pytest.fixture
def worker_env(pacs: Orthanc, scp_port: int) -> dict[str, str]:
    """The stack's worker sends to Orthanc and to a storescp on ``scp_port``."""
    return {
        "AMAQC_PACS_DESTINATIONS": f"{pacs.destination},STORESCP@127.0.0.1:{scp_port}",
        "AMAQC_PACS_RETRY_SECONDS": "0.5",
        "AMAQC_PACS_RETRY_MAX_SECONDS": "1",
    }


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_the_worker_sends_each_verdict_to_orthanc_and_storescp(
    stack: Settings, pacs: Orthanc, scp_port: int, tmp_path: Path
) -> None:
    """Orthanc is up and gets the report at once; storescp starts later and gets it then."""
    set_threshold(stack, 0.0)
    headers = auth(new_key(stack, "scanner"))
    with _client(stack) as client:
        accepted = client.post("/api/v1/series", files=series_files(3), headers=headers).json()
        _wait_done(client, accepted["status_url"], headers, stack)
    in_orthanc = pacs.wait(4)
    assert sorted(str(t["Modality"]) for t in in_orthanc) == ["OT", "OT", "OT", "SR"]
    with storescp(tmp_path / "scp", port=scp_port) as scp:
        received = scp.wait(4)
    assert {ds.SOPInstanceUID for ds in received} == {t["SOPInstanceUID"] for t in in_orthanc}
    deadline = time.monotonic() + 30
    while {r.status for r in _rows(stack)} != {"sent"} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [r.status for r in _rows(stack)] == ["sent", "sent"]
