"""The worklist's filters and rows, the viewer page's data, and the worklist's event stream
(its poller, against the real database: new series, verdicts and reviews become events)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.api.main import app
from app.config import Settings, get_settings
from app.db import repo
from app.db.models import Review
from app.db.reviews import WorklistFilter
from app.db.session import session_scope
from app.web.events import WorklistPoller
from app.worker.inference import analyse
from tests.app.conftest import auth, backend_settings, new_key, set_threshold, sign_in
from tests.utils.service import series_files


def _upload(client: TestClient, key: str, uid: str, protocol: str = "t2_tse_tra") -> int:
    files = series_files(2, uid)
    data = {"protocol": protocol, "scanner": "MR-1" if uid.endswith("1") else "MR-2"}
    r = client.post("/api/v1/series", files=files, data=data, headers=auth(key))
    assert r.status_code == 202, r.text
    return int(r.json()["series_id"])


def _row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="series-(\d+)"', html)]


def test_worklist_lists_newest_first_and_filters(web: TestClient, settings: Settings) -> None:
    scanner = new_key(settings, "scanner")
    set_threshold(settings, 0.0)
    flagged = _upload(web, scanner, "1.2.8.1", protocol="T1 MPRAGE")
    analyse(settings, flagged)
    set_threshold(settings, 1.01)
    clean = _upload(web, scanner, "1.2.8.2")
    analyse(settings, clean)
    queued = _upload(web, scanner, "1.2.8.3")
    sign_in(web, new_key(settings, "radiographer"))

    page = web.get("/").text
    assert _row_ids(page) == [queued, clean, flagged]
    assert re.search(rf'<tr id="series-{flagged}"[^>]*\n?[^>]*class="flagged', page)
    assert _row_ids(web.get("/?flagged=1").text) == [flagged]
    assert _row_ids(web.get("/?scanner=MR-2").text) == [queued, clean]
    assert _row_ids(web.get("/?protocol=mprage").text) == [flagged]
    assert _row_ids(web.get("/?from=2000-01-01&to=2000-12-31").text) == []
    r = web.get("/?from=yesterday")
    assert "is not a date (YYYY-MM-DD)" in r.text and len(_row_ids(r.text)) == 3

    web.post(
        f"/api/v1/series/{flagged}/reviews",
        json={"label": "clean"},
        headers=auth(new_key(settings, "radiographer", "Bea")),
    )
    page = web.get("/").text
    assert "overridden (clean)" in page and "Bea" in page
    assert _row_ids(web.get("/?unreviewed=1").text) == [queued, clean]


def test_viewer_page_carries_slices_verdict_model_and_threshold(
    web: TestClient, settings: Settings
) -> None:
    set_threshold(settings, 0.0)
    series_id = _upload(web, new_key(settings, "scanner"), "1.2.8.1")
    analyse(settings, series_id)
    sign_in(web, new_key(settings, "radiographer"))
    page = web.get(f"/series/{series_id}").text
    raw = page.split('<script type="application/json" id="series-data">', 1)[1].split("</script>")[
        0
    ]
    data = json.loads(raw)
    assert data["verdict"]["label"] == "artifact" and data["verdict"]["threshold"] == 0.0
    assert data["model_version"]["arch"] == "resnet18" and len(data["slices"]) == 2
    assert all(s["patch_map"] and s["probability"] is not None for s in data["slices"])
    # the patient context is for the reader (issue 22 item 3), the name as people write it
    assert "PID-SECRET-42" in page and "Doe, Jane" in page and "Doe^Jane" not in page
    assert web.get("/series/999").status_code == 404


def test_event_poller_sends_new_series_verdicts_and_reviews(
    client: TestClient, settings: Settings
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    poller = WorklistPoller(settings, WorklistFilter(flagged_only=True), None)
    everything = WorklistPoller(settings, WorklistFilter(), None)
    assert poller.poll() == [] and everything.poll() == []

    set_threshold(settings, 0.0)
    series_id = client.post("/api/v1/series", files=series_files(2), headers=scanner).json()[
        "series_id"
    ]
    # queued: shown to the unfiltered list, not (yet) to the flagged-only one
    assert [e.split("\n")[1] for e in everything.poll()] == ["event: upsert"]
    assert [e.split("\n")[1] for e in poller.poll()] == ["event: remove"]

    analyse(settings, series_id)
    events = poller.poll()
    assert len(events) == 1 and events[0].split("\n")[1] == "event: upsert"
    data = json.loads(events[0].split("data: ", 1)[1])
    assert data["id"] == series_id and 'class="flagged' in data["html"]
    assert poller.poll() == []  # nothing new, nothing sent

    radiographer = auth(new_key(settings, "radiographer"))
    client.post(
        f"/api/v1/series/{series_id}/reviews", json={"label": "artifact"}, headers=radiographer
    )
    events = poller.poll()
    assert len(events) == 1 and "confirmed (artifact)" in events[0]
    mark = events[0].split("\n")[0].removeprefix("id: ")
    assert re.fullmatch(r"s\d+\.v\d+\.r1", mark)


def test_event_stream_needs_a_session(web: TestClient) -> None:
    assert web.get("/worklist/events").status_code == 401


def test_viewer_of_a_series_without_verdict_says_so(web: TestClient, settings: Settings) -> None:
    series_id = _upload(web, new_key(settings, "scanner"), "1.2.8.1")
    sign_in(web, new_key(settings, "radiographer"))
    page = web.get(f"/series/{series_id}").text
    assert "No verdict yet: status queued" in page
    assert re.search(r'id="submit-review"\s+disabled', page)


def test_a_review_committing_after_a_newer_one_is_still_sent(
    tmp_path: Path, checkpoint: Path
) -> None:
    """On PostgreSQL ids are handed out at insert, rows appear at commit: review A takes id n,
    review B id n + 1 and commits first. The stream has seen n + 1 when A appears, and must
    still send A's series (a plain "id > watermark" feed never would)."""
    with backend_settings("postgresql", tmp_path / "data", checkpoint) as settings:
        app.dependency_overrides[get_settings] = lambda: settings
        with TestClient(app) as client:
            scanner = auth(new_key(settings, "scanner"))
            first, second = (
                client.post("/api/v1/series", files=series_files(1, uid), headers=scanner).json()[
                    "series_id"
                ]
                for uid in ("1.2.9.1", "1.2.9.2")
            )
        app.dependency_overrides.clear()
        with session_scope(settings.database_url) as session:
            key_id = repo.create_api_key(session, "r", "radiographer")[0].id
        poller = WorklistPoller(settings, WorklistFilter(), None)
        assert poller.poll() == []

        def review(session: Session, series_id: int) -> Review:
            row = Review(series_id=series_id, api_key_id=key_id, reviewer="r", label=1)
            session.add(row)
            session.flush()  # takes its id now
            return row

        engine = create_engine(settings.database_url)
        try:
            with Session(engine) as late, Session(engine) as early:
                a = review(late, first)
                b = review(early, second)
                assert a.id < b.id
                early.commit()
                assert _upserted(poller.poll()) == [second]
                late.commit()
                assert _upserted(poller.poll()) == [first]  # not lost below the watermark
                assert poller.poll() == []  # and sent once
        finally:
            engine.dispose()


def _upserted(events: list[str]) -> list[int]:
    return [json.loads(e.split("data: ", 1)[1])["id"] for e in events if "event: upsert" in e]


def _checked(page: str) -> list[str]:
    return re.findall(r'name="label" value="(\w+)" checked', page)


def test_the_review_form_starts_empty_then_shows_the_newest_review(
    web: TestClient, settings: Settings
) -> None:
    set_threshold(settings, 0.0)
    series_id = _upload(web, new_key(settings, "scanner"), "1.2.8.1")
    analyse(settings, series_id)
    sign_in(web, new_key(settings, "radiographer"))
    page = web.get(f"/series/{series_id}").text
    assert _checked(page) == [] and "Not reviewed yet: choose a label." in page

    reviewer = auth(new_key(settings, "radiographer", "Bea"))
    for label, comment in (("artifact", "first look"), ("clean", "flow, not motion")):
        r = web.post(
            f"/api/v1/series/{series_id}/reviews",
            json={"label": label, "comment": comment},
            headers=reviewer,
        )
        assert r.status_code == 201, r.text
    page = web.get(f"/series/{series_id}").text
    assert _checked(page) == ["clean"]
    assert "Reviewed: clean — overrides the model (artifact)" in page and "by Bea" in page
    assert ">flow, not motion</textarea>" in page
    data = json.loads(page.split('id="series-data">', 1)[1].split("</script>")[0])
    assert [r["label"] for r in data["reviews"]] == ["clean", "artifact"]
