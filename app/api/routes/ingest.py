"""``POST /api/v1/series`` (one complete series) and ``POST /api/v1/slices`` (one image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status

from app.api.deps import IngestKey, Multipart, SessionDep, SettingsDep
from app.api.schemas import SeriesAccepted, SkippedObject, SliceAccepted
from app.ingest.errors import NonImageObject
from app.ingest.handle import handle_upload

router = APIRouter(tags=["ingest"])

Files = Annotated[
    list[UploadFile] | None,
    File(description="DICOM, PNG, JPEG or NIfTI files, or one ZIP of them"),
]
OptionalText = Annotated[str | None, Form(max_length=200)]


@dataclass(frozen=True)
class UploadForm:
    """The multipart fields both ingest routes take."""

    parts: list[tuple[str | None, BinaryIO]]
    series_uid: str | None
    protocol: str | None
    scanner: str | None


def upload_form(
    files: Files = None,
    series_uid: OptionalText = None,
    protocol: OptionalText = None,
    scanner: OptionalText = None,
) -> UploadForm:
    return UploadForm([(f.filename, f.file) for f in files or []], series_uid, protocol, scanner)


Upload = Annotated[UploadForm, Depends(upload_form)]


@router.post(
    "/series",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SeriesAccepted,
    dependencies=[Multipart],
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
