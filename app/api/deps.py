"""Dependencies shared by the routers: settings, a DB session, the caller's key and role
checks, and the series / instance a caller may read. Handlers never repeat these checks."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import repo
from app.db.models import ApiKey, Instance, Series, WebSession
from app.db.session import new_session
from app.web import session as web_session

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
UI_ROLES = ("radiographer", "admin")

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = new_session(settings.database_url)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False, description="an amaqc API key")


def signed_in(
    request: Request, session: Session, settings: Settings
) -> tuple[ApiKey, WebSession] | None:
    """The key and session of a live web UI session cookie (radiographer or admin keys):
    None once the session was signed out, expired, or its key revoked or given another role."""
    found = web_session.lookup(session, settings, request.cookies.get(web_session.COOKIE))
    if found is None or found[0].role not in UI_ROLES:
        return None
    return found


def current_key(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The caller's API key from ``Authorization: Bearer <key>``, else from the web UI's
    session cookie (then a request that changes something must carry the page's CSRF token
    in ``X-CSRF-Token``); 401 when there is neither."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        found = signed_in(request, session, settings)
        if found is None:
            detail = (
                "the web UI session has ended (signed out, expired, or its key was revoked or "
                "given another role): sign in again at /login, or send the header "
                "'Authorization: Bearer <key>'"
                if request.cookies.get(web_session.COOKIE)
                else "missing API key: send the header 'Authorization: Bearer <key>'"
            )
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=challenge)
        cookie_key, web = found
        token = request.headers.get(web_session.CSRF_HEADER, "")
        if request.method not in SAFE_METHODS and not hmac.compare_digest(token, web.csrf):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a request signed in by cookie must send the page's {web_session.CSRF_HEADER} "
                "header",
            )
        return cookie_key
    key = repo.find_api_key(session, credentials.credentials)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown or revoked API key", headers=challenge
        )
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require_role(*roles: str) -> Any:
    """A dependency that admits only keys whose role is one of ``roles`` (else 403)."""

    def check(key: CurrentKey) -> ApiKey:
        if key.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {key.role} key may not do this; it needs a {' or '.join(roles)} key",
            )
        return key

    return Depends(check)


IngestKey = Annotated[ApiKey, require_role("scanner", "admin")]
ReviewerKey = Annotated[ApiKey, require_role(*UI_ROLES)]
AdminKey = Annotated[ApiKey, require_role("admin")]


def _may_read(key: ApiKey, uploader_key_id: int | None) -> bool:
    """Scanner keys read only their own uploads; radiographer and admin keys read all."""
    return key.role != "scanner" or uploader_key_id == key.id


def readable_series(series_id: int, key: CurrentKey, session: SessionDep) -> Series:
    series = repo.get_series(session, series_id)
    if series is None or not _may_read(key, series.uploader_key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"series {series_id} not found")
    return series


def readable_instance(instance_id: int, key: CurrentKey, session: SessionDep) -> Instance:
    instance = repo.get_instance(session, instance_id)
    series = repo.get_series(session, instance.series_id) if instance else None
    if instance is None or series is None or not _may_read(key, series.uploader_key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"instance {instance_id} not found")
    return instance


ReadableSeries = Annotated[Series, Depends(readable_series)]
ReadableInstance = Annotated[Instance, Depends(readable_instance)]


def require_multipart(request: Request) -> None:
    """415 unless the request is ``multipart/form-data``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        shown = content_type.split(";")[0] or "none"
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"expected multipart/form-data with field 'files', got content type {shown}",
        )


Multipart = Depends(require_multipart)
