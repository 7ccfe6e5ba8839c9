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
from .decode import decode
from .errors import IngestError

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
) -> tuple[service.IngestResult, list[int]]:
    """Validate everything, then store it; returns the result and the new instance ids.

    Raises:
        IngestError: for any bad input, before anything was stored.
    """
    with uploads.private_workdir(settings) as workdir:
        incoming = uploads.receive(parts, workdir, settings)
        if single and len(incoming) != 1:
            raise IngestError(422, f"expected one image, got {len(incoming)} files")
        decoded = [decode(f, settings) for f in incoming]
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
            instance_ids = service.instance_ids_of(session, result.series_id, decoded)
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
    return result, instance_ids
