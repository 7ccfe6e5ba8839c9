"""Server-side web UI sessions: a sign-out, a revoked key, a changed role and the idle and
absolute lifetimes each end a session for good, whatever cookie the browser kept; the cookie
holds a random token whose hash is the only thing stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.db import web_sessions
from app.db.models import ApiKey, WebSession
from app.db.session import session_scope
from app.db.types import utcnow
from app.migrate import upgrade
from app.security import hash_key
from app.web import session as web_session
from tests.app.conftest import app_client, make_settings, new_key, pg_database, sign_in

runner = CliRunner()


def _refused(client: TestClient, cookie: str) -> bool:
    """True when ``cookie`` is no session: pages redirect to /login, the API answers 401 JSON."""
    client.cookies.clear()
    client.cookies.set(web_session.COOKIE, cookie)
    page = client.get("/", follow_redirects=False)
    api = client.get("/api/v1/series")
    if page.status_code == 200 and api.status_code == 200:
        return False
    assert (page.status_code, page.headers["location"]) == (303, "/login")
    assert api.status_code == 401 and "session has ended" in api.json()["detail"]
    return True


def _key_id(settings: Settings, name: str) -> int:
    with session_scope(settings.database_url) as session:
        key = session.query(ApiKey).filter_by(name=name).one()
        return key.id


def _sessions_of(settings: Settings, key_id: int) -> int:
    with session_scope(settings.database_url) as session:
        return web_sessions.count_sessions(session, key_id)


def _signed_in_twice(web: TestClient, settings: Settings, key: str) -> list[str]:
    """Two sessions of ``key`` (two browsers); their cookies."""
    cookies = []
    for _ in range(2):
        web.cookies.clear()
        sign_in(web, key)
        cookies.append(web.cookies[web_session.COOKIE])
    return cookies


def _keys(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> str:
    monkeypatch.setenv("AMAQC_DATA_DIR", str(settings.data_dir))  # restored after the test
    result = runner.invoke(cli, ["keys", *args, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_old_cookie_is_refused_after_logout(web: TestClient, settings: Settings) -> None:
    csrf = sign_in(web, new_key(settings, "radiographer"))
    cookie = web.cookies[web_session.COOKIE]
    assert not _refused(web, cookie)
    r = web.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert _refused(web, cookie)  # a copy of the cookie kept elsewhere is dead too


def test_revoking_a_key_ends_every_session_of_it(
    web: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookies = _signed_in_twice(web, settings, new_key(settings, "radiographer", "Ann"))
    web.cookies.clear()
    sign_in(web, new_key(settings, "radiographer", "Bob"))
    other = web.cookies[web_session.COOKIE]
    ann = _key_id(settings, "Ann")
    out = _keys(monkeypatch, settings, "revoke", str(ann))
    assert "2 web UI session(s) ended" in out
    assert _sessions_of(settings, ann) == 0
    assert all(_refused(web, cookie) for cookie in cookies)
    assert not _refused(web, other)  # another key's session goes on


def test_changing_a_role_ends_every_session_of_the_key(
    web: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookies = _signed_in_twice(web, settings, new_key(settings, "radiographer", "Ann"))
    ann = _key_id(settings, "Ann")
    out = _keys(monkeypatch, settings, "set-role", str(ann), "--role", "admin")
    assert "is now admin; 2 web UI session(s) ended" in out
    assert _sessions_of(settings, ann) == 0
    assert all(_refused(web, cookie) for cookie in cookies)


def test_an_unknown_role_changes_nothing(
    web: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    monkeypatch.setenv("AMAQC_DATA_DIR", str(settings.data_dir))
    args = ["keys", "set-role", str(_key_id(settings, "Ann")), "--role", "boss"]
    result = runner.invoke(cli, [*args, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 2 and "got 'boss'" in result.output
    assert not _refused(web, cookie)


def test_a_role_changed_in_the_database_ends_the_session(
    web: TestClient, settings: Settings
) -> None:
    # even when the role is changed without the CLI, the session keeps no rights it lost or
    # gains none it did not sign in with
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    with session_scope(settings.database_url) as session:
        session.execute(update(ApiKey).where(ApiKey.name == "Ann").values(role="admin"))
    assert _refused(web, cookie)
    web.cookies.set(web_session.COOKIE, cookie)
    assert web.get("/admin", follow_redirects=False).headers["location"] == "/login"


def _age(settings: Settings, **columns: timedelta) -> None:
    """Move every session's timestamps back by the given amounts."""
    now = utcnow()
    values = {name: now - delta for name, delta in columns.items()}
    with session_scope(settings.database_url) as session:
        session.execute(update(WebSession).values(**values))


def test_an_idle_session_is_refused_and_deleted(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    _age(settings, last_seen_at=timedelta(seconds=settings.session_idle_seconds + 5))
    assert _refused(web, cookie)
    assert _sessions_of(settings, _key_id(settings, "Ann")) == 0


def test_a_session_in_use_is_kept_alive(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    _age(settings, last_seen_at=timedelta(seconds=settings.session_idle_seconds - 60))
    assert not _refused(web, cookie)  # this request counts as activity
    with session_scope(settings.database_url) as session:
        row = session.query(WebSession).one()
    assert utcnow() - row.last_seen_at < timedelta(seconds=web_sessions.TOUCH_SECONDS)


def test_a_session_past_its_absolute_lifetime_is_refused(
    web: TestClient, settings: Settings
) -> None:
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    # busy to the last minute, but signed in longer ago than session_max_seconds
    _age(
        settings,
        created_at=timedelta(seconds=settings.session_max_seconds + 5),
        last_seen_at=timedelta(seconds=1),
    )
    assert _refused(web, cookie)
    assert _sessions_of(settings, _key_id(settings, "Ann")) == 0


def test_lifetimes_come_from_the_settings(web: TestClient, settings: Settings) -> None:
    settings.session_idle_seconds = 30  # the fixture's object is the app's settings
    sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    _age(settings, last_seen_at=timedelta(seconds=31))
    assert _refused(web, cookie)
    settings.session_idle_seconds, settings.session_max_seconds = 3600, 30
    web.cookies.clear()
    sign_in(web, new_key(settings, "radiographer", "Bob"))
    cookie = web.cookies[web_session.COOKIE]
    _age(settings, created_at=timedelta(seconds=31))
    assert _refused(web, cookie)


def test_expired_sessions_are_pruned_at_sign_in(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "radiographer", "Ann"))  # never comes back
    ann = _key_id(settings, "Ann")
    _age(settings, last_seen_at=timedelta(seconds=settings.session_idle_seconds + 5))
    web.cookies.clear()
    sign_in(web, new_key(settings, "admin", "Bob"))
    assert _sessions_of(settings, ann) == 0


def test_the_cookie_is_a_random_token_stored_only_as_its_hash(
    web: TestClient, settings: Settings
) -> None:
    key = new_key(settings, "radiographer", "Ann")
    csrf = sign_in(web, key)
    cookie = web.cookies[web_session.COOKIE]
    # 32 random bytes, URL-safe: no key, key id, expiry or CSRF token, no signed payload
    assert len(cookie) == 43 and "." not in cookie
    assert key not in cookie and key.removeprefix("amaqc_")[:12] not in cookie
    assert csrf not in cookie
    with session_scope(settings.database_url) as session:
        row = session.query(WebSession).one()
        assert row.token_hash == hash_key(cookie) and cookie not in (row.token_hash, row.csrf)
        assert row.key_id == _key_id(settings, "Ann") and row.role == "radiographer"


@pytest.fixture
def pg_web(tmp_path: Path, checkpoint: Path) -> Iterator[tuple[TestClient, Settings]]:
    """The web client on a PostgreSQL database of its own (no broker: nothing is uploaded)."""
    with pg_database() as url:
        settings = make_settings(tmp_path / "data", checkpoint, database_url=url)
        upgrade(url)
        with app_client(settings, base_url="https://testserver") as client:
            yield client, settings


def test_sessions_end_the_same_way_on_postgresql(pg_web: tuple[TestClient, Settings]) -> None:
    web, settings = pg_web
    csrf = sign_in(web, new_key(settings, "radiographer", "Ann"))
    cookie = web.cookies[web_session.COOKIE]
    assert web.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert _refused(web, cookie)
    web.cookies.clear()
    sign_in(web, new_key(settings, "radiographer", "Bob"))
    cookie = web.cookies[web_session.COOKIE]
    _age(settings, last_seen_at=timedelta(seconds=settings.session_idle_seconds + 5))
    assert _refused(web, cookie)
