"""The web UI's session cookie: a random token (HTTP-only, SameSite=Lax, Secure) naming a
server-side session row (``app/db/web_sessions.py``), which holds only the token's SHA-256.

The cookie carries nothing else: not the key, not its id, not the CSRF token (that lives in
the row and in the pages). A session ends when its user signs out, when it has seen no request
for ``session_idle_seconds`` (8 h by default), at the latest ``session_max_seconds`` (12 h)
after sign-in, and at once for every session of a key when the key is revoked or its role
changed (``amaqc keys revoke`` / ``amaqc keys set-role``).
"""

from __future__ import annotations

from fastapi import Response
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import web_sessions
from app.db.models import ApiKey, WebSession

COOKIE = "amaqc_session"
CSRF_HEADER = "X-CSRF-Token"


def start(session: Session, settings: Settings, key: ApiKey) -> str:
    """Sign ``key`` in: a new session row (committed) and the token for the cookie."""
    _, token = web_sessions.start_session(
        session,
        key,
        idle_seconds=settings.session_idle_seconds,
        max_seconds=settings.session_max_seconds,
    )
    session.commit()
    return token


def lookup(
    session: Session, settings: Settings, token: str | None
) -> tuple[ApiKey, WebSession] | None:
    """The key and session of a cookie's token; None when absent, unknown or ended (an ended
    session's row is deleted). Commits: the refusal or the ``last_seen_at`` update."""
    if not token:
        return None
    found = web_sessions.find_session(
        session,
        token,
        idle_seconds=settings.session_idle_seconds,
        max_seconds=settings.session_max_seconds,
    )
    session.commit()
    return found


def end(session: Session, token: str | None) -> None:
    """Sign out: delete the session of ``token`` (committed)."""
    if token:
        web_sessions.end_session(session, token)
        session.commit()


def set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        # the browser drops it when the absolute lifetime ends; the server refuses it either way
        max_age=int(settings.session_max_seconds),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
