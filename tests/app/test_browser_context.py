"""Patient context and the model card in a real browser (Debian's Chromium driven by
Playwright) on the API served by uvicorn (SQLite, verdicts written in-process): a radiographer
sees the patient ID, name, accession and acquisition time on the worklist (still usable at
800 px) and in the viewer, a scanner key's API call gets none of it, ``AMAQC_HIDE_PATIENT_NAMES``
leaves the IDs only; an admin's model page shows the served checkpoint's card (metrics per
split, threshold and its rule). ``AMAQC_SHOTS=<dir>`` also saves screenshots there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings, get_settings
from app.db.session import session_scope
from app.model_versions import checkpoint_metadata, register_checkpoint, served_threshold
from tests.app.conftest import auth, new_key
from tests.utils.browser import sideways_overflow
from tests.utils.ui import base_url, page, scored, shot, sign_in, tagged_series_files

__all__ = ["base_url", "page"]  # fixtures

SERVED = Path(__file__).resolve().parents[2] / "model" / "weights" / "amaqc-default.safetensors"
#: a header as a scanner writes it (dicom_dataset adds PatientName Doe^Jane, PatientID
#: PID-SECRET-42)
TAGS: dict[str, Any] = {
    "AccessionNumber": "ACC-7781",
    "StudyDescription": "MR head",
    "StationName": "MR-3T-A",
    "Manufacturer": "Siemens",
    "AcquisitionDateTime": "20260304134501",
}


def _series(settings: Settings, base_url: str, uid: str, **tags: Any) -> int:
    return scored(settings, base_url, uid, files=tagged_series_files(2, uid, **{**TAGS, **tags}))


@pytest.mark.slow
def test_a_radiographer_sees_the_patient_on_worklist_and_viewer(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    series_id = _series(settings, base_url, "1.2.22.3.50")
    sign_in(page, settings)
    row = page.locator(f"#series-{series_id}")
    expect(row.locator("td.patient .patient-id")).to_have_text("PID-SECRET-42")
    expect(row.locator("td.patient")).to_contain_text("Doe, Jane")
    expect(row.locator("td.patient")).to_contain_text("acc. ACC-7781")
    expect(row).to_contain_text("MR head · 2026-03-04 13:45:01")
    # no ManufacturerModelName: the scanner is named from StationName, not "unknown"
    expect(row.locator("td.scanner")).to_have_text("MR-3T-A")
    shot(page, "worklist-patient.png")

    # 800 px: no sideways scrolling; the scanner and patient columns stay on screen
    assert sideways_overflow(page, 800, 900) <= 0
    for cell in ("td.scanner", "td.patient"):
        box = row.locator(cell).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 800, (cell, box)
    table = page.locator("#worklist").bounding_box()
    assert table is not None and table["x"] + table["width"] <= 800, table
    page.set_viewport_size({"width": 1280, "height": 800})

    row.click()
    context = page.locator("#patient-context")
    expect(page.locator("#patient-id")).to_have_text("PID-SECRET-42")
    expect(page.locator("#patient-name")).to_have_text("Doe, Jane")
    expect(page.locator("#accession-number")).to_have_text("ACC-7781")
    expect(page.locator("#acquired-at")).to_have_text("2026-03-04 13:45:01")
    expect(context).to_contain_text("Siemens · station MR-3T-A")
    expect(page.locator("h1")).to_contain_text("MR-3T-A")
    expect(page.locator("h1")).not_to_contain_text("unknown scanner")
    shot(page, "viewer-patient.png")
    assert sideways_overflow(page, 800, 900) <= 0

    # the uploading scanner key reads its series without any of it
    scanner = new_key(settings, "scanner", "MR-1 console 2")
    own = _upload_as(base_url, scanner, "1.2.22.3.51")
    r = httpx.get(f"{base_url}/api/v1/series/{own}", headers=auth(scanner), timeout=30)
    assert r.status_code == 200 and r.json()["context"] is None
    assert not any(v in r.text for v in ("PID-SECRET-42", "Doe", "ACC-7781")), r.text
    r = page.request.get(f"/api/v1/series/{own}")  # the reader's session: all of it
    assert r.json()["context"]["patient_id"] == "PID-SECRET-42"


def _upload_as(base_url: str, key: str, uid: str) -> int:
    r = httpx.post(
        f"{base_url}/api/v1/series",
        files=tagged_series_files(1, uid, **TAGS),
        headers=auth(key),
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


@pytest.mark.slow
def test_hiding_patient_names_shows_the_ids_only(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: settings.model_copy(
        update={"hide_patient_names": True}
    )
    series_id = _series(settings, base_url, "1.2.22.3.52")
    sign_in(page, settings)
    row = page.locator(f"#series-{series_id}")
    expect(row.locator(".patient-id")).to_have_text("PID-SECRET-42")
    expect(row.locator("td.patient")).not_to_contain_text("Doe")
    page.goto(f"/series/{series_id}")
    expect(page.locator("#patient-id")).to_have_text("PID-SECRET-42")
    expect(page.locator("#patient-name")).to_have_count(0)
    expect(page.locator("#names-hidden")).to_be_visible()
    assert "Doe" not in page.content()
    r = page.request.get(f"/api/v1/series/{series_id}")
    assert r.json()["context"]["patient_name"] is None and "Doe" not in r.text()


@pytest.mark.slow
def test_the_admin_model_page_is_a_readable_model_card(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    with session_scope(settings.database_url) as session:
        version = register_checkpoint(session, SERVED, name="served", activate=False)
        version_id = version.id
    meta = checkpoint_metadata(SERVED)
    page.goto("/login")
    page.fill("#api_key", new_key(settings, "admin", "Ada Admin"))
    page.click("button[type=submit]")
    page.goto(f"/admin/models/{version_id}")

    card = page.locator("#model-card")
    expect(page.locator("#card-name")).to_have_text("served")
    expect(page.locator("#card-status")).to_have_attribute("data-status", "inactive")
    expect(page.locator("#card-threshold")).to_have_text(f"{served_threshold(meta):.3f}")
    expect(page.locator("#card-rule")).not_to_contain_text("not recorded")
    expect(page.locator("#card-created")).to_contain_text(str(meta["created_at"]))
    table = page.locator("#card-metrics")
    expect(table.locator("thead")).to_contain_text("F1")
    expect(table.locator("thead")).to_contain_text("ROC-AUC")
    for split in ("val", "test"):
        expect(table.locator(f"tr[data-split={split}]").first).to_be_visible()
    if meta.get("fusion"):
        expect(page.locator("#card-fused tbody tr").first).to_be_visible()
    expect(page.locator("#card-data")).to_contain_text("train")
    expect(card).not_to_contain_text("test_modsev_f1")  # no raw metadata keys
    if os.environ.get("AMAQC_SHOTS"):
        page.screenshot(
            path=str(Path(os.environ["AMAQC_SHOTS"]) / "admin-model-card.png"), full_page=True
        )
    assert sideways_overflow(page, 820, 1180) <= 0  # a tablet, portrait
