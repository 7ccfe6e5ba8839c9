"""No existence oracle (issue 23 item 7): a scanner that sends another scanner's Series Instance
UID (or SOP Instance UID) gets exactly the answer an unknown UID gets, a series of its own, and
the other scanner's series is neither read nor changed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import repo
from app.db.models import Instance, Series
from app.db.session import session_scope
from tests.app.conftest import auth, new_key
from tests.utils.dicomweb import STUDIES, as_dataset, stow_body, stow_headers, to_bytes
from tests.utils.service import dicom_bytes

A_SERIES = "1.2.826.0.1.3680043.8.498.3001"
UNKNOWN = "1.2.826.0.1.3680043.8.498.3002"

#: (the uid a request is about) -> bytes of slice ``i`` of it
Slice = Callable[[str, int], bytes]


def _slice(uid: str, i: int) -> bytes:
    return dicom_bytes(series_uid=uid, instance=i, sop_uid=f"{uid}.{i}")


def _slice_without_series_uid(uid: str, i: int) -> bytes:
    """A DICOM slice with a SOP Instance UID but no Series Instance UID (some exports): its
    series is found through the SOP Instance UID stored before."""
    ds = as_dataset(_slice(uid, i))
    del ds.SeriesInstanceUID
    return to_bytes(ds)


def _series(c: TestClient, h: dict[str, str], uid: str, make: Slice) -> httpx.Response:
    files = [("files", (f"s{i}.dcm", make(uid, i), "application/dicom")) for i in (1, 2)]
    return c.post("/api/v1/series", files=files, headers=h)


def _slices(c: TestClient, h: dict[str, str], uid: str, make: Slice) -> httpx.Response:
    files = [("files", ("s1.dcm", make(uid, 1), "application/dicom"))]
    return c.post("/api/v1/slices", files=files, headers=h)


def _form_uid(c: TestClient, h: dict[str, str], uid: str, make: Slice) -> httpx.Response:
    """A PNG-like upload naming its series in the form field (here: DICOM of another uid)."""
    files = [("files", ("s1.dcm", make(f"{uid}.9", 1), "application/dicom"))]
    return c.post("/api/v1/series", files=files, data={"series_uid": uid}, headers=h)


def _stow(c: TestClient, h: dict[str, str], uid: str, make: Slice) -> httpx.Response:
    return c.post(STUDIES, content=stow_body([make(uid, 1), make(uid, 2)]), headers=stow_headers(h))


ROUTES: dict[str, Callable[[TestClient, dict[str, str], str, Slice], httpx.Response]] = {
    "POST /series": _series,
    "POST /slices": _slices,
    "POST /series, series_uid field": _form_uid,
    "STOW-RS": _stow,
}


def _answer(r: httpx.Response, uid: str) -> tuple[int, Any]:
    """The reply with what must differ between two new series (ids, the uid sent) masked."""
    text = re.sub(r"/series/\d+", "/series/<id>", r.text.replace(uid, "<uid>"))
    body = json.loads(text)
    if isinstance(body, dict):
        body.pop("series_id", None)
        if "instance_ids" in body:
            body["instance_ids"] = len(body["instance_ids"])
    return r.status_code, body


def _key_id(settings: Settings, name: str) -> int:
    with session_scope(settings.database_url) as session:
        (key,) = repo.api_keys_named(session, name)
        return key.id


def _snapshot(settings: Settings, key_id: int) -> list[tuple[Any, ...]]:
    """Every series of the key with its instances, as stored."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(
                Series.id,
                Series.series_uid,
                Series.status,
                Series.complete,
                Series.last_instance_at,
                Series.queued_at,
                func.count(Instance.id),
            )
            .join(Instance, Instance.series_id == Series.id)
            .where(Series.uploader_key_id == key_id)
            .group_by(Series.id)
        ).all()
    return [tuple(row) for row in rows]


#: (route, how its slices are made): every route by Series Instance UID; the ingest routes also
#: by SOP Instance UID alone (STOW refuses an instance without a series; the form field names
#: the series itself)
CASES = [
    *((route, _slice) for route in sorted(ROUTES)),
    ("POST /series", _slice_without_series_uid),
    ("POST /slices", _slice_without_series_uid),
]


@pytest.mark.parametrize(
    ("route", "make"), CASES, ids=[f"{r} ({m.__name__.strip('_')})" for r, m in CASES]
)
def test_another_scanners_uid_is_answered_as_an_unknown_uid(
    route: str, make: Slice, client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    send = ROUTES[route]
    first = send(client, scanner, A_SERIES, make)  # scanner A owns the series
    assert first.status_code in (200, 202), first.text
    a_key = _key_id(settings, "scanner 1")
    before = _snapshot(settings, a_key)
    b = auth(new_key(settings, "scanner", "scanner B"))
    b_key = _key_id(settings, "scanner B")

    foreign = send(client, b, A_SERIES, make)
    unknown = send(client, b, UNKNOWN, make)

    assert _answer(foreign, A_SERIES) == _answer(unknown, UNKNOWN), foreign.text
    assert _snapshot(settings, a_key) == before  # A's series: not one row changed
    a_ids = {row[0] for row in before}
    with session_scope(settings.database_url) as session:
        b_series = session.scalars(select(Series).where(Series.uploader_key_id == b_key)).all()
        assert len(b_series) == 2 and not a_ids & {s.id for s in b_series}
        b_instances = session.scalars(
            select(Instance).where(Instance.series_id.in_([s.id for s in b_series]))
        ).all()
    sent = {"POST /series": 2, "STOW-RS": 2}.get(route, 1)
    assert len(b_instances) == 2 * sent  # B's own copies, none of A's instances reused
    for series_id in a_ids:
        assert client.get(f"/api/v1/series/{series_id}", headers=b).status_code == 404


def test_a_resent_file_of_another_scanner_is_stored_as_the_callers_own(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    """The same bytes (same SOP Instance UID) as A's: a new instance of B, with B's id."""
    a = _slices(client, scanner, A_SERIES, _slice).json()
    b = auth(new_key(settings, "scanner", "scanner B"))
    r = _slices(client, b, A_SERIES, _slice)
    assert r.status_code == 202, r.text
    assert r.json()["new_instances"] == 1
    assert r.json()["series_id"] != a["series_id"]
    assert r.json()["instance_ids"] != a["instance_ids"]
    instance = client.get(f"/api/v1/instances/{r.json()['instance_ids'][0]}", headers=b)
    assert instance.status_code == 200, instance.text
    # and A's own next slice still joins A's series, not B's
    more = client.post(
        "/api/v1/slices",
        files=[("files", ("s2.dcm", _slice(A_SERIES, 2), "application/dicom"))],
        headers=scanner,
    ).json()
    assert more["series_id"] == a["series_id"] and more["new_instances"] == 1
