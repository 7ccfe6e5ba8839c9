"""Response models (``XPublic`` / ``XsPublic``), as in the OpenAPI schema at /docs."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from model.iqm import explain  # torch-free

from .schemas_context import SeriesContextPublic

if TYPE_CHECKING:
    from app.db.models import Instance, InstanceVerdict, Review


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
    """A series verdict. A slice is *flagged* when its probability is at or above the
    threshold; the series is an artifact when the rule's number of slices are flagged."""

    label: Literal["artifact", "clean"]
    probability: float = Field(
        description="The series probability: the slice probability that decides the verdict, "
        "i.e. the highest slice probability for rule 'any' (the k-th highest for 'count:k', "
        "and so on), so label is artifact exactly when probability >= threshold"
    )
    flagged_slices: list[int] = Field(
        description="Instance ids (not slice numbers) of the flagged slices, in id order: "
        "each is an instance of `instances` (`GET /api/v1/instances/{id}`); their DICOM "
        "InstanceNumbers are in flagged_instance_numbers"
    )
    flagged_instance_numbers: list[int | None] = Field(
        default_factory=list,
        description="The DICOM InstanceNumber of each flagged slice, in the order of "
        "flagged_slices (null for a slice without one, e.g. a PNG)",
    )
    flagged_count: int = Field(description="How many slices are flagged")
    rule: str = Field(
        description="When the series is an artifact: 'any' flagged slice, 'count:k' (at least "
        "k slices) or 'fraction:f' (at least that share of the slices)"
    )
    threshold: float = Field(
        description="The threshold that applied: a slice at or above it is flagged "
        "(threshold_source says whose it is)"
    )
    threshold_source: (
        Literal["scanner+protocol", "protocol", "scanner", "acquisition", "model"] | None
    ) = Field(
        default=None,
        description="Where the threshold came from: a per-scanner / per-protocol threshold "
        "(`GET /api/v1/thresholds`) for the series' scanner and protocol, its protocol, its "
        "scanner; else the model version's threshold for the series' acquisition family "
        "('acquisition': the series' `acquisition`), or the model version's own ('model': a "
        "version without one for that family, or a series of unknown family); null for "
        "verdicts written before thresholds existed",
    )
    threshold_scanner: str | None = Field(
        default=None,
        description="The scanner named by the threshold that applied ('' for any scanner; "
        "null with sources 'acquisition' and 'model')",
    )
    threshold_protocol: str | None = Field(
        default=None,
        description="The protocol named by the threshold that applied ('' for any protocol; "
        "null with sources 'acquisition' and 'model')",
    )


class InstancePublic(BaseModel):
    id: int
    instance_number: int | None
    frame_index: int
    rows: int
    cols: int
    probability: float | None = Field(
        description="The served detector's artifact probability (the fused detector's where the "
        "model version carries one)"
    )
    label: Literal["artifact", "clean"] | None
    cnn_probability: float | None = Field(
        default=None, description="AMAResNet's own slice probability (null for older verdicts)"
    )
    iqms: dict[str, float] | None = Field(
        default=None,
        description="The image-quality metrics of the slice (model.iqm), name -> value",
    )
    spectral_probability: float | None = Field(
        default=None,
        description="The spectral network's artifact probability (a CNN on the slice's k-space "
        "magnitude, model.spectral) where the served detector reads it, else null",
    )
    inference: str | None = Field(
        default=None,
        description="What ran the network for this verdict: backend (precision where not "
        "float32) and device, e.g. 'onnxruntime-int8 (cpu)' (null for older verdicts)",
    )
    quality_notes: list[str] = Field(
        default_factory=list, description="One plain-language line per image-quality metric"
    )
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
    acquisition: Literal["epi", "non_epi"] | None = Field(
        default=None,
        description="The acquisition family: 'epi' (echo-planar: diffusion, fMRI) or 'non_epi' "
        "(spin / gradient echo: T1, T2, FLAIR, PD), from the DICOM header (ScanningSequence, "
        "EchoPlanarPulseSequence, ImageType, sequence and protocol names) or from the "
        "upload's protocol; null when nothing says. It picks the model's threshold for the "
        "family where no per-scanner / per-protocol threshold applies",
    )
    context: SeriesContextPublic | None = Field(
        default=None,
        description="Patient, study and series context from the DICOM header: radiographer "
        "and admin keys only (null for a scanner key)",
    )
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
        rows=instance.rows,
        cols=instance.cols,
        probability=verdict.probability if verdict else None,
        label=label_name(verdict.label) if verdict else None,
        cnn_probability=verdict.cnn_probability if verdict else None,
        iqms=verdict.iqms if verdict else None,
        spectral_probability=verdict.spectral_probability if verdict else None,
        inference=verdict.inference if verdict else None,
        quality_notes=explain(verdict.iqms) if verdict and verdict.iqms else [],
        image_url=request.url_for("instance_image", instance_id=instance.id).path,
        heatmap_url=request.url_for("instance_heatmap", instance_id=instance.id).path,
    )


class ReviewCreate(BaseModel):
    """A review: the series label, optional labels of single slices (by instance id), a
    comment. Whether it confirms or overrides the model follows from the verdict.

    ``slice_sources`` says who set each slice label: ``reader`` (the default) or ``model``
    (the reader accepted the model's call for that slice as it was). Retraining uses a
    model-accepted label only with ``model_slices_confirmed`` (the reader checked them).
    """

    model_config = ConfigDict(extra="forbid")

    label: Literal["artifact", "clean"]
    slices: dict[int, Literal["artifact", "clean"]] = Field(default_factory=dict)
    slice_sources: dict[int, Literal["reader", "model"]] = Field(default_factory=dict)
    model_slices_confirmed: bool = False
    comment: str = Field(default="", max_length=4000)


class ReviewPublic(BaseModel):
    id: int
    series_id: int
    label: Literal["artifact", "clean"]
    model_label: Literal["artifact", "clean"] | None
    #: "confirmed" or "overridden" (the model's verdict), "labelled" when there was none
    decision: Literal["confirmed", "overridden", "labelled"]
    slices: dict[int, Literal["artifact", "clean"]]
    #: who set each slice label: "reader", or "model" (accepted from the model's call)
    slice_sources: dict[int, Literal["reader", "model"]]
    model_slices_confirmed: bool
    comment: str
    reviewer: str
    created_at: datetime


class ReviewsPublic(BaseModel):
    items: list[ReviewPublic]


def review_decision(
    label: int, model_label: int | None
) -> Literal["confirmed", "overridden", "labelled"]:
    if model_label is None:
        return "labelled"
    return "confirmed" if label == model_label else "overridden"


def review_public(review: Review) -> ReviewPublic:
    return ReviewPublic(
        id=review.id,
        series_id=review.series_id,
        label="artifact" if review.label else "clean",
        model_label=label_name(review.model_label),
        decision=review_decision(review.label, review.model_label),
        slices={s.instance_id: "artifact" if s.label else "clean" for s in review.slices},
        slice_sources={
            s.instance_id: "model" if s.source == "model" else "reader" for s in review.slices
        },
        model_slices_confirmed=review.model_slices_confirmed,
        comment=review.comment,
        reviewer=review.reviewer,
        created_at=review.created_at,
    )
