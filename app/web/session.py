"""The web UI's session cookie: signed and timestamped (itsdangerous, HMAC-SHA256), HTTP-only,
SameSite=Lax, Secure.

The cookie holds the key's row id, an expiry time and a random CSRF token, never the key
itself; it is refused once older than ``session_hours``. It is signed with
``AMAQC_SECRET_KEY``, or with a random secret generated on first use and kept in
``<data_dir>/secret_key`` (mode 0600) so sign-ins survive a restart. A revoked key ends its
sessions at once: every request looks the key up again.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.config import Settings

COOKIE = "amaqc_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class WebSession:
    key_id: int
    expires: int  # Unix seconds
    csrf: str


def secret(settings: Settings) -> bytes:
    """The signing secret: the setting, else ``<data_dir>/secret_key`` (created once)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes starting at once keep the same secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to generate a new session secret")
    return value.encode()


#: namespaces the signature: a value signed with the same secret for another purpose is no session
SALT = "amaqc.web-session"


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret(settings), salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def encode(settings: Settings, key_id: int) -> tuple[str, WebSession]:
    """A cookie value for ``key_id`` valid for ``session_hours``, and what it holds."""
    session = WebSession(
        key_id=key_id,
        expires=int(time.time() + settings.session_hours * 3600),
        csrf=secrets.token_urlsafe(24),
    )
    value = _serializer(settings).dumps(
        {"k": session.key_id, "e": session.expires, "c": session.csrf}
    )
    return value, session


def decode(settings: Settings, value: str | None) -> WebSession | None:
    """The session in a cookie value; None when absent, tampered with or expired."""
    if not value:
        return None
    try:
        data = _serializer(settings).loads(value, max_age=round(settings.session_hours * 3600))
        session = WebSession(int(data["k"]), int(data["e"]), str(data["c"]))
    except (BadSignature, ValueError, KeyError, TypeError):  # SignatureExpired is a BadSignature
        return None
    return session if session.expires > time.time() else None


def set_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(settings.session_hours * 3600),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE, path="/", secure=settings.cookie_secure, httponly=True, samesite="lax"
    )
