"""The worklist in a real browser (Debian's Chromium driven by Playwright) on the API served by
uvicorn (SQLite, verdicts written in-process): the reviewed label and its reviewer beside the
model's verdict, a column sorted by a click with the filters kept in the URL, and the scanner
column still there at 800 px. ``AMAQC_SHOTS=<dir>`` also saves screenshots there."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.app.conftest import auth, new_key, set_threshold
from tests.utils.browser import sideways_overflow
from tests.utils.ui import base_url, page, scored, shot, sign_in

__all__ = ["base_url", "page"]  # fixtures


@pytest.mark.slow
def test_the_worklist_shows_the_reviewed_label_and_sorts(
    settings: Settings, base_url: str, page: Any
) -> None:
    import httpx
    from playwright.sync_api import expect

    set_threshold(settings, 0.0)  # the model flags every series
    ids = [
        scored(settings, base_url, f"1.2.22.5{n}", n=n + 1, scanner=name, protocol="t2_tse_tra")
        for n, name in enumerate(("MR-B", "MR-C", "MR-A"))
    ]
    overridden = ids[0]
    r = httpx.post(
        f"{base_url}/api/v1/series/{overridden}/reviews",
        json={"label": "clean", "comment": "flow"},
        headers=auth(new_key(settings, "radiographer", "Bea Reader")),
    )
    assert r.status_code == 201, r.text
    sign_in(page, settings)

    row = page.locator(f"#series-{overridden}")
    expect(row.locator("td.label .badge")).to_have_text("clean")
    expect(row.locator("td.label")).to_contain_text("overridden (clean) · Bea Reader")
    expect(row.locator("td.model .badge")).to_have_text("artifact")
    expect(row).not_to_have_class("flagged")  # not red: the reader said clean
    expect(page.locator(f"#series-{ids[1]}")).to_have_class(
        "flagged status-done review-row-unreviewed"
    )
    expect(page.locator(f"#series-{ids[1]} td.label")).to_contain_text("model · unreviewed")

    # filter, then sort by scanner with a click: both stay in the URL
    page.check("input[name=flagged]")
    page.click(".filters button[type=submit]")
    page.click("#sort-scanner")
    page.wait_for_url("**/?flagged=1&sort=scanner&dir=asc")
    expect(page.locator("input[name=flagged]")).to_be_checked()
    order = page.eval_on_selector_all("#worklist tbody tr", "rows => rows.map(r => +r.dataset.id)")
    assert order == [ids[2], ids[0], ids[1]]  # MR-A, MR-B, MR-C
    expect(page.locator("#worklist th[aria-sort=ascending]")).to_contain_text("Scanner")
    page.click("#sort-scanner")  # a second click reverses
    page.wait_for_url("**/?flagged=1&sort=scanner&dir=desc")
    order = page.eval_on_selector_all("#worklist tbody tr", "rows => rows.map(r => +r.dataset.id)")
    assert order == [ids[1], ids[0], ids[2]]
    page.reload()  # a reload shows the same list
    expect(page.locator("#worklist th[aria-sort=descending]")).to_contain_text("Scanner")
    shot(page, "worklist.png")

    # 800 px: no sideways scrolling, and the scanner column is still on screen
    assert sideways_overflow(page, 800, 900) <= 0
    cell = page.locator(f"#series-{overridden} td.scanner")
    expect(cell).to_be_visible()
    box = cell.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 800
    table = page.locator("#worklist").bounding_box()
    assert table is not None and table["x"] + table["width"] <= 800, table
    shot(page, "worklist-800.png")
