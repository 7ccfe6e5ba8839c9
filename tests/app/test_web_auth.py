"""Web UI sign-in: who may sign in, the session cookie's flags and contents, admin pages, and
the CSRF rule for cookie-authenticated API calls."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.web import session as web_session
from tests.app.conftest import new_key, sign_in


def test_signing_in_sets_a_secure_http_only_lax_cookie_without_the_key(
    web: TestClient, settings: Settings
) -> None:
    key = new_key(settings, "radiographer", "Ann")
    r = web.post("/login", data={"api_key": key}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "secure" in flags and "samesite=lax" in flags
    assert key not in cookie and key.removeprefix("amaqc_")[:12] not in cookie
    assert "Ann" in web.get("/").text


def test_a_scanner_key_cannot_sign_in(web: TestClient, settings: Settings) -> None:
    r = web.post("/login", data={"api_key": new_key(settings, "scanner")}, follow_redirects=False)
    assert r.status_code == 403 and "scanner key cannot sign in" in r.text
    assert "set-cookie" not in r.headers


def test_an_unknown_key_cannot_sign_in(web: TestClient) -> None:
    r = web.post("/login", data={"api_key": "amaqc_nope"}, follow_redirects=False)
    assert r.status_code == 401 and "unknown or revoked API key" in r.text


def test_pages_redirect_to_login_when_signed_out(web: TestClient) -> None:
    for path in ("/", "/series/1", "/admin"):
        r = web.get(path, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/login"), path


def test_a_made_up_cookie_is_not_a_session(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "radiographer"))
    genuine = web.cookies[web_session.COOKIE]
    web.cookies.clear()
    web.cookies.set(web_session.COOKIE, genuine[:-4] + "AAAA")
    assert web.get("/", follow_redirects=False).status_code == 303
    web.cookies.set(web_session.COOKIE, genuine)
    assert web.get("/", follow_redirects=False).status_code == 200


def test_a_radiographer_gets_403_on_admin_pages(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "radiographer"))
    r = web.get("/admin")
    assert r.status_code == 403 and "admin keys" in r.text


def test_an_admin_sees_the_model_versions(web: TestClient, settings: Settings) -> None:
    sign_in(web, new_key(settings, "admin"))
    r = web.get("/admin")
    assert r.status_code == 200 and "tiny-" in r.text and "resnet18" in r.text


def test_signing_out_ends_the_session(web: TestClient, settings: Settings) -> None:
    csrf = sign_in(web, new_key(settings, "radiographer"))
    r = web.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert web.get("/", follow_redirects=False).status_code == 303


def test_a_revoked_key_ends_its_session(web: TestClient, settings: Settings) -> None:
    from app.db.models import ApiKey
    from app.db.session import session_scope

    sign_in(web, new_key(settings, "radiographer", "revoke me"))
    with session_scope(settings.database_url) as session:
        session.query(ApiKey).filter_by(name="revoke me").update({"revoked": True})
    assert web.get("/", follow_redirects=False).status_code == 303


def test_cookie_api_writes_need_the_csrf_header(web: TestClient, settings: Settings) -> None:
    csrf = sign_in(web, new_key(settings, "radiographer"))
    body = {"label": "clean"}
    r = web.post("/api/v1/series/1/reviews", json=body)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    # with the token the request gets past authentication (to the unknown series)
    r = web.post("/api/v1/series/1/reviews", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and r.json()["detail"] == "series 1 not found"


def test_login_page_warns_when_the_cookie_cannot_be_kept(client: TestClient) -> None:
    # plain HTTP to a host that is not loopback: the browser drops a Secure cookie
    assert "AMAQC_COOKIE_SECURE=false" in client.get("/login").text


def test_login_page_does_not_warn_over_https(web: TestClient) -> None:
    assert "AMAQC_COOKIE_SECURE" not in web.get("/login").text
