"""The worklist: the series' label (the reader's when reviewed, else the model's) beside the
model's verdict; sorting by time, probability, scanner and status; filters, sort and page in
the URL."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

import app.web.routes
from app.config import Settings
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key, set_threshold, sign_in
from tests.utils.service import series_files


def _upload(client: TestClient, key: str, uid: str, scanner: str, n: int = 2) -> int:
    r = client.post(
        "/api/v1/series",
        files=series_files(n, uid),
        data={"scanner": scanner, "protocol": "t2_tse_tra"},
        headers=auth(key),
    )
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


def _row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="series-(\d+)"', page)]


def _row(page: str, series_id: int) -> str:
    return page.split(f'<tr id="series-{series_id}"', 1)[1].split("</tr>", 1)[0]


@pytest.fixture
def three(web: TestClient, settings: Settings) -> list[int]:
    """Three flagged series on MR-2, MR-3, MR-1 (oldest first), scored, and one queued."""
    scanner = new_key(settings, "scanner")
    set_threshold(settings, 0.0)
    ids = []
    for n, (name, slices) in enumerate((("MR-2", 1), ("MR-3", 3), ("MR-1", 2))):
        ids.append(_upload(web, scanner, f"1.2.22.4{n}", name, slices))
        analyse(settings, ids[-1])
    ids.append(_upload(web, scanner, "1.2.22.49", "MR-4"))  # queued: no verdict
    sign_in(web, new_key(settings, "radiographer"))
    return ids


def test_an_overridden_series_shows_the_readers_label_beside_the_models(
    web: TestClient, settings: Settings, three: list[int]
) -> None:
    overridden, confirmed, unreviewed = three[:3]
    reader = auth(new_key(settings, "radiographer", "Bea"))
    for series_id, label in ((overridden, "clean"), (confirmed, "artifact")):
        r = web.post(f"/api/v1/series/{series_id}/reviews", json={"label": label}, headers=reader)
        assert r.status_code == 201, r.text
    page = web.get("/").text

    row = _row(page, overridden)
    assert 'class=" status-done review-row-overridden"' in row  # not red: the reader said clean
    label_cell, model_cell = row.split('<td class="label', 1)[1].split('<td class="model">', 1)
    assert (
        '<span class="badge clean">clean</span>' in label_cell
        and "overridden (clean)" in label_cell
    )
    assert "Bea" in label_cell
    assert '<span class="badge small artifact">artifact</span>' in model_cell
    assert 'class="flagged status-done review-row-confirmed"' in _row(page, confirmed)
    unreviewed_row = _row(page, unreviewed)
    assert "flagged" in unreviewed_row.split(">", 1)[0] and "model · unreviewed" in unreviewed_row


def test_the_worklist_sorts_by_each_column_both_ways(
    web: TestClient, settings: Settings, three: list[int]
) -> None:
    queued = three[3]
    body = {
        i: web.get(f"/api/v1/series/{i}", headers=auth(new_key(settings, "admin"))).json()
        for i in three
    }
    assert _row_ids(web.get("/").text) == three[::-1]
    assert _row_ids(web.get("/?sort=received&dir=asc").text) == three

    by_scanner = sorted(three, key=lambda i: body[i]["scanner"])
    assert _row_ids(web.get("/?sort=scanner").text) == by_scanner
    assert _row_ids(web.get("/?sort=scanner&dir=desc").text) == by_scanner[::-1]

    scored = [i for i in three if body[i]["verdict"]]
    by_p = sorted(scored, key=lambda i: (-body[i]["verdict"]["probability"], -i))
    assert _row_ids(web.get("/?sort=probability").text) == [*by_p, queued]  # none: last

    # status in processing order: queued before done
    assert _row_ids(web.get("/?sort=status").text)[0] == queued
    assert _row_ids(web.get("/?sort=status&dir=desc").text)[-1] == queued


def test_sort_links_keep_the_filters_and_a_second_click_reverses(
    web: TestClient, three: list[int]
) -> None:
    page = web.get("/?flagged=1&sort=scanner&dir=asc").text
    link = re.search(r'id="sort-scanner" href="([^"]+)"', page)
    assert link is not None
    assert link.group(1).replace("&amp;", "&") == "/?flagged=1&sort=scanner&dir=desc"
    assert '<th aria-sort="ascending"' in page
    # the filter form carries the sort, so filtering keeps it
    assert '<input type="hidden" name="sort" value="scanner">' in page


def test_the_worklist_pages_keep_filters_and_sort(
    web: TestClient, three: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.web.routes, "PAGE_SIZE", 2)
    first = web.get("/?sort=received&dir=asc").text
    assert _row_ids(first) == three[:2]
    older = re.search(r'id="page-older" href="([^"]+)"', first)
    assert older is not None
    url = older.group(1).replace("&amp;", "&")
    assert url == "/?sort=received&dir=asc&page=2"
    second = web.get(url).text
    assert _row_ids(second) == three[2:] and 'id="page-older"' not in second
    assert 'id="page-newer" href="/?sort=received&amp;dir=asc"' in second
    assert 'data-live="0"' in second and 'data-live="1"' in web.get("/").text


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sort=colour", "sort: 'colour' is not one of received, probability, scanner, status"),
        ("sort=scanner&dir=up", "dir: 'up' is not asc or desc"),
        ("page=0", "page: '0' is not a page number"),
    ],
)
def test_an_unusable_sort_or_page_is_named_and_ignored(
    web: TestClient, three: list[int], query: str, problem: str
) -> None:
    r = web.get(f"/?{query}")
    assert r.status_code == 200 and problem in html.unescape(r.text)
    assert len(_row_ids(r.text)) == len(three)
