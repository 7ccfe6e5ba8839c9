"""The radiographer UI in a real browser: Debian's Chromium (``make browser`` installs it) driven
by Playwright, against the API served by uvicorn and a real Celery worker (SQLite + the local
broker, and PostgreSQL + Redis).

One walk-through per backend: sign in, a series uploaded while the worklist is open appears
flagged without a reload, open it, step through slices with the keyboard, toggle the heatmap,
submit an override, find it in the export. (The README's screenshots come from
``tests/app/test_screenshots.py``: the served model on real slices.)
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings, get_settings
from tests.app.conftest import auth, new_key, set_threshold
from tests.utils.browser import WAIT_MS, chromium_page, sideways_overflow
from tests.utils.images import phantom
from tests.utils.server import serve
from tests.utils.service import dicom_bytes


@pytest.fixture
def base_url(stack: Settings) -> Iterator[str]:
    from app.api.main import app

    app.dependency_overrides[get_settings] = lambda: stack
    try:
        with serve(app) as url:
            yield url
    finally:
        app.dependency_overrides.clear()


@pytest.fixture
def page(base_url: str) -> Iterator[object]:
    with chromium_page(base_url) as page:
        yield page


def _upload(base_url: str, key: str, uid: str, n: int, **data: str) -> int:
    """n 128x128 DICOM slices (the tiny model's 2x2 patch grid shows in the heatmap)."""
    files = [
        (
            "files",
            (
                f"{i}.dcm",
                dicom_bytes(phantom(128, seed=i), series_uid=uid, instance=i + 1),
                "application/dicom",
            ),
        )
        for i in range(n)
    ]
    r = httpx.post(
        f"{base_url}/api/v1/series",
        files=files,
        data=data,
        headers=auth(key),
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


def _wait_done(base_url: str, key: str, series_id: int) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        r = httpx.get(f"{base_url}/api/v1/series/{series_id}", headers=auth(key), timeout=30)
        if r.json()["status"] in ("done", "failed"):
            assert r.json()["status"] == "done", r.json()
            return
        time.sleep(0.2)
    raise AssertionError(f"series {series_id} got no verdict in {WAIT_MS / 1000:.0f} s")


def _fits(page: object, width: int, height: int) -> None:
    """No sideways scrolling at this size, and the slice view is on screen."""
    overflow = sideways_overflow(page, width, height)
    assert overflow <= 0, f"{overflow} px wider than a {width} px window"
    box = page.locator("#stage").bounding_box()  # type: ignore[attr-defined]
    assert box and box["width"] >= 240 and box["x"] + box["width"] <= width


@pytest.mark.slow
def test_radiographer_reviews_a_flagged_series_in_the_browser(
    stack: Settings, base_url: str, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    scanner = new_key(stack, "scanner", "MR-1 console")
    reviewer = new_key(stack, "radiographer", "Ann Radiographer")
    # an earlier clean series, so the worklist has more than the new one
    set_threshold(stack, 1.01)
    earlier = _upload(base_url, scanner, "1.2.7.1", 2, scanner="MR-2", protocol="t1_se_sag")
    _wait_done(base_url, scanner, earlier)

    # sign in
    page.goto("/login")
    page.fill("#api_key", reviewer)
    page.click("button[type=submit]")
    expect(page.locator("#worklist")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "amaqc_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    assert reviewer not in cookie["value"]
    expect(page.locator(f"#series-{earlier}")).to_contain_text("clean")
    expect(page.locator("#worklist")).to_have_attribute("data-stream", "open")

    # a flagged series arrives while the page is open: no reload
    page.evaluate("window.__loaded_once = true")
    set_threshold(stack, 0.0)  # the tiny model's verdict would otherwise be a coin toss
    series_id = _upload(base_url, scanner, "1.2.7.2", 4, scanner="MR-1", protocol="t2_tse_tra")
    row = page.locator(f"#series-{series_id}.flagged")
    expect(row).to_contain_text("artifact")
    expect(row).to_contain_text("4 / 4")
    assert page.evaluate("window.__loaded_once") is True, "the page was reloaded"
    ids = page.eval_on_selector_all("#worklist tbody tr", "rows => rows.map(r => +r.dataset.id)")
    assert ids == [series_id, earlier]

    # open it: the first flagged slice is selected, the heatmap drawn over it
    row.click()
    stage = page.locator("#stage")
    expect(stage).to_have_attribute("data-index", "0")
    expect(page.locator("#slice-info")).to_contain_text("Slice 1 / 4")
    expect(page.locator("#threshold")).to_have_text("0.000")
    page.wait_for_function(
        "() => { const c = document.getElementById('heat');"
        " return c.width > 0 && c.getContext('2d').getImageData(0, 0, c.width, c.height)"
        ".data.some((v, i) => i % 4 === 3 && v > 0); }"
    )
    bright = page.evaluate(
        "() => { const c = document.getElementById('image');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s; }"
    )
    assert bright > 0, "the slice was not drawn"

    # keyboard: arrows step through the slices, h toggles the heatmap
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(stage).to_have_attribute("data-index", "2")
    expect(page.locator("#slice-info")).to_contain_text("Slice 3 / 4")
    page.keyboard.press("ArrowLeft")
    expect(stage).to_have_attribute("data-index", "1")
    expect(stage).to_have_attribute("data-heat", "on")
    page.keyboard.press("h")
    expect(stage).to_have_attribute("data-heat", "off")
    assert page.eval_on_selector("#heat", "c => getComputedStyle(c).opacity") == "0"
    page.keyboard.press("h")
    expect(stage).to_have_attribute("data-heat", "on")
    _fits(page, 1280, 800)
    _fits(page, 820, 1180)  # a tablet, portrait
    page.set_viewport_size({"width": 1280, "height": 800})

    # override: the series is clean; slice 2 labelled clean with the keyboard
    page.keyboard.press("c")
    expect(page.locator("#slice-label-count")).to_have_text("1 of 4 labelled")
    page.check("input[name=label][value=clean]")
    expect(page.locator("#decision")).to_have_text("Overrides the model (artifact)")
    page.fill("#comment", "pulsation from the carotids, not motion")
    page.click("#submit-review")
    expect(page.locator("#review-status")).to_contain_text(
        "Saved: overridden (clean) by Ann Radiographer"
    )

    # the worklist shows it, and the export has it as labels
    page.goto("/")
    expect(page.locator(f"#series-{series_id}")).to_contain_text("overridden (clean)")
    r = page.request.get("/api/v1/reviews/export?format=csv")
    assert r.ok, r.text()
    rows = [
        row for row in csv.DictReader(io.StringIO(r.text())) if row["series_id"] == str(series_id)
    ]
    assert len(rows) == 4 and {row["label"] for row in rows} == {"clean"}
    assert {row["reviewer"] for row in rows} == {"Ann Radiographer"}
    assert {row["comment"] for row in rows} == {"pulsation from the carotids, not motion"}
    labelled = [row for row in rows if row["label_source"] == "slice"]
    assert len(labelled) == 1
