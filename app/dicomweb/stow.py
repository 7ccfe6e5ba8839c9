"""STOW-RS, one request start to end: check every part on its own, store the good ones.

A bad instance is refused alone (with a Failure Reason and a sentence naming the problem); the
others are stored through the ingest service, grouped by Series Instance UID, one transaction
per series, each series enqueued for analysis right after its commit. A STOW request is taken
as the complete content of each series it carries, so the verdict follows at once; a later
request with more instances of the same series has the series analysed again. A re-sent
instance (same SOP Instance UID or same bytes) is not stored twice but is still reported as
stored, since it is.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ApiKey
from app.ingest import service
from app.ingest.errors import IngestError
from app.ingest.judgeable import detector_min_side
from app.queue import enqueue_analysis

from .multipart import Part
from .validate import Accepted, FailureReason, Rejected, check_part

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """A part stored (or found already stored) as an instance of amaqc series ``series_id``."""

    part: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    series_id: int


Outcome = Stored | Rejected


def _store_failure(exc: Exception) -> tuple[FailureReason, str]:
    if isinstance(exc, IngestError):
        return FailureReason.PROCESSING_FAILURE, exc.detail
    if isinstance(exc, OSError):  # the store: disk full, permissions
        logger.error("could not write to the store: %s", type(exc).__name__)
        return FailureReason.OUT_OF_RESOURCES, "the server could not store it; try again later"
    return (
        FailureReason.PROCESSING_FAILURE,
        "a concurrent upload changed this series; send it again",
    )


def store_series(
    session: Session,
    settings: Settings,
    key: ApiKey,
    parts: list[Accepted],
    *,
    complete: bool = True,
) -> list[Outcome]:
    """Store the checked instances of one series in one transaction, then enqueue it.

    ``complete``: the parts are the whole series (STOW-RS), else slices that join it and wait
    for it to become stable (the C-STORE listener). A transaction that lost a race with a
    concurrent upload of the same series (a unique constraint) is tried once more: by then
    the series exists, and an instance stored meanwhile is found, not stored twice.
    """
    files = [p.decoded for p in parts]
    for attempt in (1, 2):
        try:
            result = service.ingest(
                session,
                settings.storage_dir,
                files,
                key,
                series_uid=None,
                protocol=None,
                scanner=None,
                complete=complete,
            )
            session.commit()
            break
        except IntegrityError as exc:
            session.rollback()
            if attempt == 1:
                continue
            failure: Exception = exc
        except (IngestError, OSError) as exc:
            session.rollback()
            failure = exc
        reason, detail = _store_failure(failure)
        return [
            Rejected(
                p.part,
                reason,
                f"part {p.part}: {detail}",
                p.header.sop_class_uid,
                p.header.sop_instance_uid,
            )
            for p in parts
        ]
    if result.enqueue:  # after the commit: the worker must find the rows
        enqueue_analysis(settings.broker_url, result.series_id)
    return [
        Stored(p.part, p.header.sop_class_uid, p.header.sop_instance_uid, result.series_id)
        for p in parts
    ]


def store_parts(
    session: Session, settings: Settings, key: ApiKey, parts: list[Part], study_uid: str | None
) -> list[Outcome]:
    """Check and store every part; one outcome per part, in request order."""
    outcomes: list[Outcome] = []
    by_series: dict[str | None, list[Accepted]] = {}
    min_side = detector_min_side(settings.database_url)  # once, not once per part
    for part in parts:
        checked = check_part(part, settings, study_uid, min_side=min_side)
        if isinstance(checked, Rejected):
            outcomes.append(checked)
        else:
            by_series.setdefault(checked.decoded.series_instance_uid, []).append(checked)
    for series_parts in by_series.values():
        outcomes.extend(store_series(session, settings, key, series_parts))
    outcomes.sort(key=lambda o: o.part)
    reasons = Counter(f"{o.reason:#06x}" for o in outcomes if isinstance(o, Rejected))
    logger.info(
        "STOW from key %s: %d part(s), %d stored in %d series, refused %s",
        key.id,
        len(parts),
        sum(isinstance(o, Stored) for o in outcomes),
        len(by_series),
        dict(reasons) or "none",
    )
    return outcomes
