"""DICOMweb STOW-RS: ``POST /dicomweb/studies`` and ``POST /dicomweb/studies/{study}``.

The body (``multipart/related; type="application/dicom"``, one instance per part) is streamed
to files before anything is decoded; the reply is the PS3.18 Store Instances Response Module
as ``application/dicom+json``: 200 all stored, 202 some refused, 409 none stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from app.api.deps import IngestKey, SessionDep, SettingsDep
from app.config import Settings
from app.db.models import ApiKey
from app.dicomweb.multipart import RelatedType, parse_content_type, receive_parts
from app.dicomweb.response import MEDIA_TYPE, http_status, store_response
from app.dicomweb.stow import store_parts
from app.ingest.errors import STORAGE_FULL, StorageFull
from app.ingest.uploads import private_workdir

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


def related_dicom(request: Request) -> RelatedType:
    """415 unless ``multipart/related; type="application/dicom"``; 400 without a boundary."""
    return parse_content_type(request.headers.get("content-type", ""))


RelatedDicom = Annotated[RelatedType, Depends(related_dicom)]
StudyUID = Annotated[
    str, Path(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$", description="Study Instance UID")
]
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    },
    "responses": {
        "200": {"description": "all instances stored", "content": {MEDIA_TYPE: {}}},
        "202": {"description": "some instances refused (FailedSOPSequence)"},
        "409": {"description": "no instance stored (FailedSOPSequence)"},
    },
}


async def _store(
    request: Request,
    key: ApiKey,
    session: Session,
    settings: Settings,
    related: RelatedType,
    study: str | None,
) -> JSONResponse:
    try:
        with private_workdir(settings) as workdir:
            parts = await receive_parts(request.stream(), related, workdir, settings)
            outcomes = await run_in_threadpool(store_parts, session, settings, key, parts, study)
    except OSError as exc:  # no room for the parts themselves (the store's own failures are
        if exc.errno not in STORAGE_FULL:  # answered per instance by store_parts)
            raise
        raise StorageFull() from None

    def status_url(series_id: int) -> str:
        return str(request.url_for("get_series", series_id=series_id))

    return JSONResponse(
        store_response(outcomes, status_url),
        status_code=http_status(outcomes),
        media_type=MEDIA_TYPE,
    )


@router.post("/studies", openapi_extra=_OPENAPI, response_class=JSONResponse)
async def store_instances(
    request: Request,
    key: IngestKey,
    related: RelatedDicom,
    session: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Store DICOM instances of any studies (STOW-RS); each series' verdict follows."""
    return await _store(request, key, session, settings, related, None)


@router.post("/studies/{study}", openapi_extra=_OPENAPI, response_class=JSONResponse)
async def store_study_instances(
    request: Request,
    study: StudyUID,
    key: IngestKey,
    related: RelatedDicom,
    session: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Store DICOM instances of one study (STOW-RS); an instance of another study is refused."""
    return await _store(request, key, session, settings, related, study)
