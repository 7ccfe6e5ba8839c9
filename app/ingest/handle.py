"""One upload, start to end: receive -> decode every file -> store + rows -> commit -> enqueue."""

from __future__ import annotations

import logging
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ApiKey
from app.queue import enqueue_analysis

from . import service, uploads
from .decode import DecodedFile, decode
from .errors import STORAGE_FULL, IngestError, NonImageObject, StorageFull
from .judgeable import detector_min_side

logger = logging.getLogger(__name__)


def handle_upload(
    session: Session,
    settings: Settings,
    key: ApiKey,
    parts: list[tuple[str | None, BinaryIO]],
    *,
    series_uid: str | None = None,
    protocol: str | None = None,
    scanner: str | None = None,
    complete: bool = True,
    single: bool = False,
) -> tuple[service.IngestResult, list[int], list[NonImageObject]]:
    """Validate everything, then store it; returns the result, the new instance ids and the
    non-image DICOM objects (SR, PR, ...) that were skipped, each with its reason.

    Raises:
        IngestError: for any bad input, before anything was stored (also when nothing but
            non-image objects came).
        StorageFull: (a 507) the data dir had no room; the rows were rolled back and no
            partial file is left (a complete original stored before the disk filled stays,
            unreferenced, and is used again when the upload is sent again).
    """
    try:
        return _handle(
            session, settings, key, parts, series_uid, protocol, scanner, complete, single
        )
    except OSError as exc:
        if exc.errno not in STORAGE_FULL:
            raise
        logger.error("upload refused: no room in %s (%s)", settings.data_dir, exc.strerror)
        raise StorageFull() from None


def _handle(
    session: Session,
    settings: Settings,
    key: ApiKey,
    parts: list[tuple[str | None, BinaryIO]],
    series_uid: str | None,
    protocol: str | None,
    scanner: str | None,
    complete: bool,
    single: bool,
) -> tuple[service.IngestResult, list[int], list[NonImageObject]]:
    with uploads.private_workdir(settings) as workdir:
        incoming = uploads.receive(parts, workdir, settings)
        if single and len(incoming) != 1:
            raise IngestError(422, _not_one(incoming))
        decoded, skipped = _decode_all(incoming, settings)
        try:
            result = service.ingest(
                session,
                settings.storage_dir,
                decoded,
                key,
                series_uid=series_uid,
                protocol=protocol,
                scanner=scanner,
                complete=complete,
            )
            session.commit()
        except IntegrityError:
            session.rollback()
            raise IngestError(
                409, "a concurrent upload changed this series; send it again"
            ) from None
        except BaseException:
            session.rollback()
            raise
    logger.info(
        "series %s: %d new instance(s) from key %s", result.series_id, result.new_instances, key.id
    )
    if result.enqueue:  # after the commit: the worker must find the rows
        enqueue_analysis(settings.broker_url, result.series_id)
    return result, list(result.instance_ids), skipped


def _not_one(incoming: list[uploads.IncomingFile]) -> str:
    names = ", ".join(f.name for f in incoming[:3]) + (", ..." if len(incoming) > 3 else "")
    return (
        f"found {len(incoming)} files ({names}); expected one image per request to "
        "/api/v1/slices (send a series to /api/v1/series)"
    )


def _decode_all(
    incoming: list[uploads.IncomingFile], settings: Settings
) -> tuple[list[DecodedFile], list[NonImageObject]]:
    """Decode every file; non-image objects are set aside, any other problem refuses all."""
    decoded, skipped = [], []
    min_side = detector_min_side(settings.database_url)
    for item in incoming:
        try:
            decoded.append(decode(item, settings, min_side=min_side))
        except NonImageObject as exc:
            skipped.append(exc)
    if not decoded and skipped:
        reasons = "; ".join(exc.detail for exc in skipped)
        raise IngestError(422, f"no image in the upload: {reasons}")
    return decoded, skipped
