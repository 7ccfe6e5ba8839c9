"""Dependencies shared by the routers: settings, a DB session, the caller's key and role
checks, and the series / instance a caller may read. Handlers never repeat these checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import repo
from app.db.models import ApiKey, Instance, Series
from app.db.session import new_session

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = new_session(settings.database_url)
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
_bearer = HTTPBearer(auto_error=False, description="an amaqc API key")


def current_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The caller's API key from ``Authorization: Bearer <key>``; 401 when missing/unknown."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            headers=challenge,
        )
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
