"""Hostile input: who may call what, generated from the app's own routes (issue 20).

Every route of ``app.api.main.app`` (walked with ``fastapi.routing.iter_route_contexts``, so a
new route is in the matrix the day it is added) is called with no key, with a made-up key and
with a key of each role, and the status is checked against ``POLICY``, the access rules as
README's API table states them. A route that ``POLICY`` does not classify fails the test: a new
endpoint must say who may call it. The web UI's pages are called signed out, with a made-up
session cookie and signed in as each UI role. Scanner keys read only their own uploads: every
route with a ``{series_id}`` or ``{instance_id}`` is called by scanner B on scanner A's ids.

Small tests on purpose (tests/app/test_auth_keys.py and test_web_auth.py keep the single
cases): one request per (route, caller), all on one SQLite data dir.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from app.config import get_settings
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from app.web import events
from tests.app.conftest import auth, make_settings, new_key, sign_in
from tests.utils.dicomweb import stow_body, stow_headers
from tests.utils.service import dicom_bytes, scored_series

ROLES = ("scanner", "radiographer", "admin")
PUBLIC = frozenset({"public"})
ANY_KEY = frozenset(ROLES)
INGEST = frozenset({"scanner", "admin"})
REVIEW = frozenset({"radiographer", "admin"})
ADMIN = frozenset({"admin"})

#: (methods or "*", path pattern) -> who may call it: roles of API keys, "public" (no key
#: needed), "web" (the UI's pages: a signed-in radiographer or admin session), "web-admin"
#: (the UI's admin pages). The first matching rule wins.
POLICY: list[tuple[str, str, frozenset[str]]] = [
    ("*", r"/(openapi\.json|docs|docs/oauth2-redirect|redoc|healthz|readyz|metrics)", PUBLIC),
    ("*", r"/static.*", PUBLIC),
    ("*", r"/(login|logout)", PUBLIC),
    ("POST", r"/api/v1/(series|slices)", INGEST),
    ("POST", r"/dicomweb/studies(/\{study\})?", INGEST),
    ("*", r"/api/v1/series/\{series_id\}/reviews", REVIEW),
    ("GET", r"/api/v1/reviews/export", REVIEW),
    ("GET", r"/api/v1/(series|instances)(/.*)?", ANY_KEY),
    ("*", r"/api/v1/(training-jobs|models|thresholds)(/.*)?", ADMIN),
    ("*", r"/admin(/.*)?", frozenset({"web-admin"})),
    ("GET", r"/(series/\{series_id\}|worklist/events)?", frozenset({"web"})),
]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # FastAPI's template, e.g. /api/v1/series/{series_id}
    allowed: frozenset[str]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def policy_of(method: str, path: str) -> frozenset[str] | None:
    for methods, pattern, allowed in POLICY:
        if (methods == "*" or method in methods.split(",")) and re.fullmatch(pattern, path):
            return allowed
    return None


def routes() -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD left out (GET's twin)."""
    from app.api.main import app

    for context in iter_route_contexts(app.routes):
        for method in sorted(context.methods or {"GET"}):
            if method != "HEAD" and context.path is not None:
                yield method, context.path


def endpoints() -> list[Endpoint]:
    return [Endpoint(m, p, policy_of(m, p) or frozenset()) for m, p in routes()]


ENDPOINTS = endpoints()
API = [e for e in ENDPOINTS if e.allowed & ANY_KEY]
WEB = [e for e in ENDPOINTS if e.allowed & {"web", "web-admin"}]
SCANNER_READS = [
    e for e in API if e.method == "GET" and re.search(r"\{(series|instance)_id\}", e.path)
]


def test_every_route_says_who_may_call_it() -> None:
    unclassified = [f"{m} {p}" for m, p in routes() if policy_of(m, p) is None]
    assert not unclassified, f"add these routes to POLICY in {__name__}: {unclassified}"
    assert len(API) >= 20 and len(WEB) >= 5 and len(SCANNER_READS) >= 5  # the walk found them


@dataclass(frozen=True)
class World:
    """One data dir: scanner A's series with one instance, a key of each role, scanner B."""

    client: TestClient
    keys: dict[str, str]
    series_id: int
    instance_id: int
    version_id: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Iterator[World]:
    """Module-wide (the calls change nothing another call depends on: refused writes, 404s,
    ingest of new series); scanner A's series is analysed, so that its verdict exists."""
    from app.api.main import app

    settings = make_settings(tmp_path_factory.mktemp("roles") / "data", checkpoint)
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        version_id = register_checkpoint(session, checkpoint).id
    keys = {role: new_key(settings, role, f"{role} A") for role in ROLES}
    keys["scanner B"] = new_key(settings, "scanner", "scanner B")
    app.dependency_overrides[get_settings] = lambda: settings
    stream_seconds = events.STREAM_SECONDS
    events.STREAM_SECONDS = 0.0  # the worklist's event stream: one reply, not five minutes
    try:
        with TestClient(app) as client:
            series_id, (instance_id,) = scored_series(
                client, settings, auth(keys["scanner"]), uid="1.2.826.0.1.3680043.8.498.20", n=1
            )
            yield World(client, keys, series_id, instance_id, version_id)
    finally:
        events.STREAM_SECONDS = stream_seconds
        app.dependency_overrides.clear()


def _url(world: World, path: str) -> str:
    ids = {
        "series_id": world.series_id,
        "instance_id": world.instance_id,
        "version_id": world.version_id,
        "job_id": 999,
        "threshold_id": 999,
        "study": "1.2.826.0.1.3680043.8.498.20.0",
    }
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)


def call(world: World, endpoint: Endpoint, headers: dict[str, str]) -> int:
    """The status of one request with a body the route can parse (so that a refusal is the
    caller's, not the body's): multipart for ingest, STOW-RS for DICOMweb, none otherwise."""
    url = _url(world, endpoint.path)
    kwargs: dict[str, object] = {"headers": headers, "follow_redirects": False}
    data = dicom_bytes(series_uid="1.2.826.0.1.3680043.8.498.21")
    if endpoint.path.startswith("/dicomweb/"):
        kwargs = {**kwargs, "content": stow_body([data]), "headers": stow_headers(headers)}
    elif endpoint.path in ("/api/v1/series", "/api/v1/slices") and endpoint.method == "POST":
        kwargs["files"] = [("files", ("b.dcm", data, "application/dicom"))]
    return world.client.request(endpoint.method, url, **kwargs).status_code  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", API, ids=lambda e: e.id)
def test_api_route_admits_exactly_its_roles(world: World, endpoint: Endpoint) -> None:
    got = {
        "no key": call(world, endpoint, {}),
        "made-up key": call(world, endpoint, auth("amaqc_" + "x" * 43)),
        **{role: call(world, endpoint, auth(world.keys[role])) for role in ROLES},
    }
    want_refused = {"no key": 401, "made-up key": 401}
    want_refused |= {role: 403 for role in ROLES if role not in endpoint.allowed}
    assert {k: got[k] for k in want_refused} == want_refused, got
    for role in endpoint.allowed & ANY_KEY:
        assert got[role] not in (401, 403) and got[role] < 500, (role, got)


@pytest.mark.parametrize("endpoint", SCANNER_READS, ids=lambda e: e.id)
def test_scanner_b_never_reads_scanner_a_s_series_or_images(
    world: World, endpoint: Endpoint
) -> None:
    mine = call(world, endpoint, auth(world.keys["scanner"]))
    theirs = call(world, endpoint, auth(world.keys["scanner B"]))
    assert theirs == 404 and mine != 404, (mine, theirs)


def test_scanner_b_lists_none_of_scanner_a_s_series(world: World) -> None:
    def listed(key: str) -> set[int]:
        r = world.client.get("/api/v1/series?limit=200", headers=auth(world.keys[key]))
        return {s["id"] for s in r.json()["items"]}

    mine, theirs = listed("scanner"), listed("scanner B")
    assert world.series_id in mine and not mine & theirs


def test_scanner_b_sending_scanner_a_s_series_uid_gets_a_series_of_its_own(world: World) -> None:
    """The same Series Instance UID from another key is another series: nothing of A's is
    joined, read or changed."""
    data = dicom_bytes(series_uid="1.2.826.0.1.3680043.8.498.20", instance=2)
    r = world.client.post(
        "/api/v1/slices",
        files=[("files", ("c.dcm", data, "application/dicom"))],
        headers=auth(world.keys["scanner B"]),
    )
    assert r.status_code == 202 and r.json()["series_id"] != world.series_id
    a = world.client.get(f"/api/v1/series/{world.series_id}", headers=auth(world.keys["scanner"]))
    assert len(a.json()["instances"]) == 1


def _signed_in(world: World, role: str) -> tuple[TestClient, dict[str, str]]:
    """A client signed in with ``role``'s key, and the form field its page's CSRF token goes in."""
    from app.api.main import app

    web = TestClient(app, base_url="https://testserver")
    return web, {"csrf": sign_in(web, world.keys[role])}


@pytest.mark.parametrize("endpoint", WEB, ids=lambda e: e.id)
def test_web_page_admits_exactly_its_sessions(world: World, endpoint: Endpoint) -> None:
    """Signed out or with a made-up cookie: sent to /login (a page) or 401 (the event stream);
    a radiographer session: 403 on the admin pages, served elsewhere; an admin session: never
    refused (a write with the page's CSRF token)."""
    from app.api.main import app

    url = _url(world, endpoint.path)
    signed_out = TestClient(app, base_url="https://testserver")
    made_up = TestClient(app, base_url="https://testserver", cookies={"amaqc_session": "x" * 43})
    got = {
        "signed out": signed_out.request(endpoint.method, url, follow_redirects=False),
        "made-up cookie": made_up.request(endpoint.method, url, follow_redirects=False),
    }
    for role in ("radiographer", "admin"):
        web, form = _signed_in(world, role)
        data = form if endpoint.method == "POST" else None
        got[role] = web.request(endpoint.method, url, data=data, follow_redirects=False)
    for caller in ("signed out", "made-up cookie"):
        r = got[caller]
        assert (r.status_code, r.headers.get("location")) in ((303, "/login"), (401, None)), (
            caller,
            r,
        )
    radiographer = got["radiographer"].status_code
    assert radiographer == 403 if "web-admin" in endpoint.allowed else radiographer < 400
    admin = got["admin"]
    assert admin.status_code not in (401, 403) and admin.status_code < 500, admin
    assert admin.headers.get("location") != "/login", admin
