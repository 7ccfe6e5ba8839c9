"""``POST /api/v1/series`` (one complete series) and ``POST /api/v1/slices`` (one image)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.api.deps import IngestKey, Multipart, SessionDep, SettingsDep
from app.api.schemas import SeriesAccepted, SkippedObject, SliceAccepted
from app.api.upload_form import OPENAPI, Upload
from app.ingest.errors import NonImageObject
from app.ingest.handle import handle_upload

router = APIRouter(tags=["ingest"])


@router.post(
    "/series",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SeriesAccepted,
    dependencies=[Multipart],
    openapi_extra=OPENAPI,
)
def upload_series(
    request: Request,
    key: IngestKey,
    session: SessionDep,
    settings: SettingsDep,
    form: Upload,
) -> SeriesAccepted:
    """Upload one complete series; its verdict follows (poll ``status_url``). DICOM objects
    that are not images (SR, presentation states, ...) are skipped and listed in ``skipped``
    with their reason; any other bad file refuses the whole upload."""
    result, _, skipped = handle_upload(
        session,
        settings,
        key,
        form.parts,
        series_uid=form.series_uid,
        protocol=form.protocol,
        scanner=form.scanner,
    )
    url = str(request.url_for("get_series", series_id=result.series_id).path)
    return SeriesAccepted(
        series_id=result.series_id,
        status_url=url,
        new_instances=result.new_instances,
        skipped=_skipped(skipped),
    )


def _skipped(objects: list[NonImageObject]) -> list[SkippedObject]:
    return [
        SkippedObject(file=o.name, sop_instance_uid=o.sop_instance_uid, reason=o.detail)
        for o in objects
    ]


@router.post(
    "/slices",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SliceAccepted,
    dependencies=[Multipart],
    openapi_extra=OPENAPI,
)
def upload_slice(
    request: Request,
    key: IngestKey,
    session: SessionDep,
    settings: SettingsDep,
    form: Upload,
) -> SliceAccepted:
    """Upload one image: its slice verdict comes at once; a DICOM slice joins its series
    (SeriesInstanceUID), whose verdict follows once no new slice came for
    ``AMAQC_SERIES_STABLE_SECONDS``."""
    result, instance_ids, _ = handle_upload(
        session,
        settings,
        key,
        form.parts,
        series_uid=form.series_uid,
        protocol=form.protocol,
        scanner=form.scanner,
        complete=False,
        single=True,
    )
    url = str(request.url_for("get_series", series_id=result.series_id).path)
    return SliceAccepted(
        series_id=result.series_id,
        status_url=url,
        new_instances=result.new_instances,
        instance_ids=instance_ids,
    )
