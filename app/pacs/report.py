"""A series verdict as the PACS objects need it: read once from the database and the stored
DICOM headers, so the SR and the secondary captures are built from the same facts.

Only DICOM series get reports: a PACS files an SR under the patient and study of the images it
refers to, which PNG, JPEG or NIfTI uploads do not have. Every UID a report carries is derived
from :attr:`SeriesReport.digest` (the verdict's content), so the report built again for the same
verdict (a retried send, ``GET /series/{id}/sr``) is the same DICOM instance, and a changed
verdict (a late slice) is a new one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy.orm import Session

from app import storage
from app.config import Settings
from app.db import repo

#: the patient and study attributes a report copies from its source images
PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


class NoReport(Exception):
    """The series has no report to build (no verdict yet, or no DICOM source images)."""


@dataclass(frozen=True)
class SliceResult:
    """One scored slice: where it came from in DICOM terms and what the model said of it."""

    instance_id: int
    sop_class_uid: str
    sop_instance_uid: str
    #: 1-based frame number within a multi-frame source instance (None: single frame)
    frame_number: int | None
    instance_number: int | None
    probability: float
    flagged: bool
    #: the ``model.iqm`` panel of the slice, name -> value (empty for verdicts before v2)
    iqms: dict[str, float]
    #: (rows, cols) patch probabilities
    patch_map: list[Any]
    storage_path: str
    frame_index: int


@dataclass(frozen=True)
class SeriesReport:
    """A series verdict with its slices (in series order) and the source headers (no pixels)."""

    series_id: int
    series_uid: str
    label: int
    probability: float
    threshold: float
    rule: str
    flagged_count: int
    model_name: str
    model_arch: str
    verdict_at: datetime
    slices: list[SliceResult]
    #: the source instances' headers, one per file: patient and study of the report
    headers: list[Dataset] = field(repr=False)

    @property
    def label_name(self) -> str:
        return "artifact" if self.label else "clean"

    @property
    def flagged(self) -> list[SliceResult]:
        return [s for s in self.slices if s.flagged]

    @property
    def digest(self) -> str:
        """16 hex digits of the verdict's content (the same for the same verdict)."""
        content = {
            "series": self.series_uid,
            "model": self.model_name,
            "verdict": [self.label, self.probability, self.threshold, self.rule],
            "slices": [
                [s.sop_instance_uid, s.frame_number, s.probability, s.flagged] for s in self.slices
            ],
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def uid(self, *parts: object) -> str:
        """A UID for one object of this report, e.g. ``uid("sr")``: ``2.25.<n>`` with n a
        name-based UUID (PS3.5 B.2) of the series, the digest and ``parts``."""
        name = "/".join(["amaqc", self.series_uid, self.digest, *map(str, parts)])
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def load_report(session: Session, settings: Settings, series_id: int) -> SeriesReport:
    """The series' newest verdict (the one users see) with its slices; raises
    :class:`NoReport` saying why when there is none to build."""
    series = repo.get_series(session, series_id)
    verdict = repo.series_verdict(session, series_id) if series is not None else None
    if series is None or verdict is None:
        raise NoReport(f"series {series_id} has no verdict yet")
    version = repo.model_version(session, verdict.model_version_id)
    instances = repo.series_instances(session, series_id)
    verdicts = repo.instance_verdicts(session, [i.id for i in instances], verdict.model_version_id)
    headers: dict[str, Dataset | None] = {}  # by stored file (None: not a DICOM file)
    slices = []
    flagged = set(verdict.flagged)
    for inst in instances:
        slice_verdict = verdicts.get(inst.id)
        if slice_verdict is None or not inst.sop_instance_uid:
            continue
        if inst.storage_path not in headers:
            headers[inst.storage_path] = _header(settings, inst.storage_path)
        header = headers[inst.storage_path]
        if header is None:
            continue
        frames = int(header.get("NumberOfFrames", 1) or 1)
        slices.append(
            SliceResult(
                instance_id=inst.id,
                sop_class_uid=str(header.SOPClassUID),
                sop_instance_uid=inst.sop_instance_uid,
                frame_number=inst.frame_index + 1 if frames > 1 else None,
                instance_number=inst.instance_number,
                probability=float(slice_verdict.probability),
                flagged=inst.id in flagged,
                iqms={k: float(v) for k, v in (slice_verdict.iqms or {}).items()},
                patch_map=list(slice_verdict.patch_map),
                storage_path=inst.storage_path,
                frame_index=inst.frame_index,
            )
        )
    if not slices:
        raise NoReport(
            f"series {series_id} has no DICOM source images: a report needs the patient and "
            "study of DICOM slices"
        )
    return SeriesReport(
        series_id=series.id,
        series_uid=series.series_uid,
        label=verdict.label,
        probability=float(verdict.probability),
        threshold=float(verdict.threshold),
        rule=verdict.rule,
        flagged_count=verdict.flagged_count,
        model_name=version.name if version else f"model version {verdict.model_version_id}",
        model_arch=version.arch if version else "unknown",
        verdict_at=verdict.created_at,
        slices=slices,
        headers=[h for h in headers.values() if h is not None],
    )


def _header(settings: Settings, storage_path: str) -> Dataset | None:
    """The stored DICOM file's header without pixel data (None: not DICOM, or unreadable)."""
    if not storage_path.endswith(".dcm"):
        return None
    try:
        path = storage.resolve(settings.storage_dir, storage_path)
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, ValueError, InvalidDicomError):
        return None
    if "SOPClassUID" not in header or "StudyInstanceUID" not in header:
        return None
    for keyword in PATIENT_STUDY_TYPE2:  # empty when absent (type 2: present, may be empty)
        if keyword not in header:
            setattr(header, keyword, None)
    return header
