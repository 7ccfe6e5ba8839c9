"""Response models (``XPublic`` / ``XsPublic``), as in the OpenAPI schema at /docs."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from fastapi import Request
from pydantic import BaseModel

if TYPE_CHECKING:
    from app.db.models import Instance, InstanceVerdict


class SkippedObject(BaseModel):
    """A DICOM object of the upload that is not an image (SR, PR, ...), not stored."""

    file: str
    sop_instance_uid: str | None
    reason: str


class SeriesAccepted(BaseModel):
    series_id: int
    status_url: str
    new_instances: int
    skipped: list[SkippedObject] = []


class SliceAccepted(SeriesAccepted):
    instance_ids: list[int]


class VerdictPublic(BaseModel):
    label: Literal["artifact", "clean"]
    probability: float
    flagged_slices: list[int]
    flagged_count: int
    rule: str
    threshold: float


class InstancePublic(BaseModel):
    id: int
    instance_number: int | None
    frame_index: int
    probability: float | None
    label: Literal["artifact", "clean"] | None
    image_url: str
    heatmap_url: str


class ModelVersionPublic(BaseModel):
    id: int
    name: str
    arch: str


class Timings(BaseModel):
    received_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    processing_seconds: float | None
    total_seconds: float | None


class SeriesPublic(BaseModel):
    id: int
    status: str
    error: str | None
    protocol: str | None
    scanner: str | None
    verdict: VerdictPublic | None
    instances: list[InstancePublic]
    model_version: ModelVersionPublic | None
    timings: Timings
    attempts: int


class SeriesSummary(BaseModel):
    id: int
    status: str
    label: Literal["artifact", "clean"] | None
    probability: float | None
    received_at: datetime
    status_url: str


class SeriesListPublic(BaseModel):
    items: list[SeriesSummary]
    next_cursor: int | None


def label_name(label: int | None) -> Literal["artifact", "clean"] | None:
    if label is None:
        return None
    return "artifact" if label else "clean"


def instance_public(
    instance: Instance, verdict: InstanceVerdict | None, request: Request
) -> InstancePublic:
    """The API view of one slice and its verdict (``None`` until it is scored)."""
    return InstancePublic(
        id=instance.id,
        instance_number=instance.instance_number,
        frame_index=instance.frame_index,
        probability=verdict.probability if verdict else None,
        label=label_name(verdict.label) if verdict else None,
        image_url=request.url_for("instance_image", instance_id=instance.id).path,
        heatmap_url=request.url_for("instance_heatmap", instance_id=instance.id).path,
    )
