"""The admin page of thresholds (``/admin/thresholds``) without a browser: real SQLite."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from app.config import Settings
from app.db import thresholds
from app.db.session import session_scope
from app.notify import series_event
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key, sign_in
from tests.utils.protocols import header_dicom, upload


def _rows(page: str) -> list[list[str]]:
    """The cells of the thresholds table, row by row (tags stripped)."""
    body = page.split('id="thresholds"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr id="threshold-\d+">(.*?)</tr>', body, re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def test_an_admin_sets_sees_and_removes_a_threshold_on_the_page(
    web: TestClient, settings: Settings
) -> None:
    csrf = sign_in(web, new_key(settings, "admin", "Ada"))
    assert "No thresholds" in web.get("/admin/thresholds").text
    form = {"csrf": csrf, "scanner": "MR-East-1", "protocol": "T1_MPRAGE", "value": "0.42"}
    r = web.post("/admin/thresholds", data=form, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/admin/thresholds")
    page = web.get("/admin/thresholds").text
    (row,) = _rows(page)
    assert row[:7] == ["mr east 1", "t1 mprage", "scanner+protocol", "0.42", "admin", "", "Ada"]
    assert 'id="model-threshold"' in page and "Thresholds</a>" in web.get("/admin").text
    with session_scope(settings.database_url) as session:
        (row,) = thresholds.list_thresholds(session)
        row_id = row.id
    r = web.post(f"/admin/thresholds/{row_id}/remove", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert _rows(web.get("/admin/thresholds").text) == []


def test_a_bad_value_shows_the_form_again_with_the_reason(
    web: TestClient, settings: Settings
) -> None:
    csrf = sign_in(web, new_key(settings, "admin", "Ada"))
    form = {"csrf": csrf, "scanner": "", "protocol": "flair", "value": "high"}
    r = web.post("/admin/thresholds", data=form)
    assert r.status_code == 422 and "must be a number in [0, 1], got &#39;high&#39;" in r.text
    assert 'value="flair"' in r.text  # the form keeps what was typed
    r = web.post("/admin/thresholds", data={**form, "protocol": "", "value": "0.5"})
    assert r.status_code == 422 and "got neither" in r.text
    with session_scope(settings.database_url) as session:
        assert thresholds.list_thresholds(session) == []


def test_a_radiographer_gets_403_on_the_thresholds_page(
    web: TestClient, settings: Settings
) -> None:
    sign_in(web, new_key(settings, "radiographer"))
    assert web.get("/admin/thresholds").status_code == 403


def test_the_viewer_and_the_webhook_event_name_the_threshold_that_decided(
    web: TestClient, settings: Settings
) -> None:
    with session_scope(settings.database_url) as session:
        thresholds.set_threshold(
            session, scanner="", protocol="T1 MPRAGE", value=0.0, origin="admin", set_by="t"
        )
    scanner = auth(new_key(settings, "scanner"))
    series_id = upload(web, scanner, header_dicom("1.2.3.6.1", protocol="t1_mprage"))
    assert analyse(settings, series_id) == "done"
    event = series_event(settings, series_id)
    assert event is not None and event["threshold_source"] == "protocol"
    sign_in(web, new_key(settings, "radiographer"))
    page = web.get(f"/series/{series_id}").text
    assert '<span id="threshold-for">(set for protocol t1 mprage)</span>' in page
