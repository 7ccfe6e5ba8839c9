"""Store validated files and write the Study / Series / Instance rows.

Callers decode every file first (:func:`app.ingest.decode.decode`); nothing here can fail on
bad image data. Enqueueing happens in the caller, after the transaction commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app import storage
from app.db import repo
from app.db.models import ApiKey, Instance, Series
from app.db.types import utcnow

from .context import fill_context
from .decode import DecodedFile
from .errors import IngestError


@dataclass(frozen=True)
class IngestResult:
    series_id: int
    new_instances: int
    #: whether a job must be enqueued once the transaction commits
    enqueue: bool
    #: the instance (new or already stored) of each file and frame, in upload order
    instance_ids: tuple[int, ...] = ()


def new_series_uid() -> str:
    """A DICOM UID for a series that came without one (PNG/JPEG/NIfTI): 2.25.<uuid4 int>."""
    return f"2.25.{uuid.uuid4().int}"


def series_uid_of(files: list[DecodedFile], given: str | None) -> str:
    """The series the upload belongs to: the form field, else the DICOM files' own UID."""
    uids = sorted({f.series_instance_uid for f in files if f.series_instance_uid})
    if given:
        given = given.strip()
        if len(given) > 64:
            raise IngestError(
                422,
                f"form field 'series_uid': found {len(given)} characters; expected a DICOM UID "
                "of at most 64",
            )
        return given
    if len(uids) > 1:
        raise IngestError(
            422,
            f"found files of {len(uids)} different series (Series Instance UIDs "
            f"{', '.join(uids[:3])}{', ...' if len(uids) > 3 else ''}); expected one series per "
            "upload",
        )
    return uids[0] if uids else new_series_uid()


def _known_series(
    session: Session, files: list[DecodedFile], given: str | None, key: ApiKey
) -> Series | None:
    """For files without a series UID: the key's series their SOPInstanceUIDs were stored in."""
    if given or any(f.series_instance_uid for f in files):
        return None
    for decoded in files:
        if decoded.sop_instance_uid:
            found = repo.series_of_sop_uid(session, decoded.sop_instance_uid, key.id)
            if found is not None:
                return found
    return None


def store_files(
    session: Session,
    storage_root: Path,
    files: list[DecodedFile],
    series: Series,
) -> tuple[int, list[int]]:
    """Store originals and add one Instance per new slice; returns how many were new and the
    instance id of each file and frame in upload order.

    A re-sent instance (the same bytes in ``series``, or the same SOPInstanceUID in a series of
    the same uploader, also earlier in this upload) gets the instance already there. One query
    finds the stored ones and one flush adds the new ones, whatever the number of files.
    """
    by_bytes: dict[tuple[str, int], Instance] = {}
    by_uid: dict[tuple[str, int], Instance] = {}

    def remember(instance: Instance) -> None:
        if instance.series_id == series.id:
            by_bytes.setdefault((instance.sha256, instance.frame_index), instance)
        if instance.sop_instance_uid is not None:
            by_uid.setdefault((instance.sop_instance_uid, instance.frame_index), instance)

    for stored in repo.stored_instances(
        session, series, [(f.sha256, f.sop_instance_uid) for f in files]
    ):
        remember(stored)
    new: list[Instance] = []
    found: list[Instance] = []
    for decoded in files:
        rel: str | None = None
        uid = decoded.sop_instance_uid
        for frame, (rows, cols) in enumerate(decoded.shapes):
            instance = by_bytes.get((decoded.sha256, frame))
            if instance is None and uid is not None:
                instance = by_uid.get((uid, frame))
            if instance is None:
                rel = rel or storage.put(storage_root, decoded.path, decoded.sha256, decoded.ext)
                instance = Instance(
                    series_id=series.id,
                    sop_instance_uid=uid,
                    sha256=decoded.sha256,
                    storage_path=rel,
                    instance_number=decoded.instance_number,
                    frame_index=frame,
                    rows=rows,
                    cols=cols,
                )
                new.append(instance)
                remember(instance)
            found.append(instance)
    repo.add_instances(session, new)
    return len(new), [instance.id for instance in found]


def ingest(
    session: Session,
    storage_root: Path,
    files: list[DecodedFile],
    key: ApiKey,
    *,
    series_uid: str | None,
    protocol: str | None,
    scanner: str | None,
    complete: bool,
) -> IngestResult:
    """Add ``files`` to their series (created when new). ``complete``: the upload is the whole
    series (``/series``), else a slice that waits for the series to become stable.

    Series are the uploader's own: a Series Instance UID another key used is a new series of
    ``key`` (answered as any unknown UID is), and nothing of the other key's is read or
    changed."""
    series = _known_series(session, files, series_uid, key)
    uid = series.series_uid if series else series_uid_of(files, series_uid)
    series = series or repo.series_by_uid(session, uid, key.id)
    if series is None:
        study_uids = {f.study_instance_uid for f in files if f.study_instance_uid}
        study = (
            repo.get_or_create_study(session, study_uids.pop()) if len(study_uids) == 1 else None
        )
        first = files[0]
        series = repo.add_series(
            session,
            Series(
                series_uid=uid,
                study_id=study.id if study else None,
                scanner=(scanner or first.scanner or None),
                protocol=(protocol or first.series_description or None),
                status="receiving",
                complete=complete,
                uploader_key_id=key.id,
            ),
        )
        fill_context(session, series, files, scanner_given=bool(scanner))
    new, ids = store_files(session, storage_root, files, series)
    if new:
        series.last_instance_at = utcnow()
    if complete:
        if new or series.status not in ("done", "processing", "queued"):
            repo.mark_queued(session, series, complete=True)
            return IngestResult(series.id, new, enqueue=True, instance_ids=tuple(ids))
        return IngestResult(series.id, new, enqueue=False, instance_ids=tuple(ids))
    if new:  # a slice: its own verdict now, the series verdict once stable
        series.complete = False
        series.status = "receiving"
        session.flush()
    return IngestResult(series.id, new, enqueue=new > 0, instance_ids=tuple(ids))
