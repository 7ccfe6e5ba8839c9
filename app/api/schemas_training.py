"""Request and response models of retraining: training jobs, model versions, activations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.db.models import ModelActivation, ModelVersion, TrainingJob
from app.db.repo_training import ShadowPair, ShadowSummary

#: = model.list_models() (a test checks it): the API process never imports torch to ask
ARCHS = (
    "amaresnet18",
    "cnn2d",
    "densenet121",
    "resnet18",
    "resnet18_pyramid",
    "resnet18_se",
    "unet_encoder",
    "vgg16",
    "vgg19",
)


class DatasetSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["dataset"]
    path: str = Field(
        description="a labelled folder under the data dir, relative to it (any layout "
        "`amaqc train` reads); never outside it",
        examples=["datasets/site-a"],
    )


class ReviewsSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["reviews"]


class TrainingJobCreate(BaseModel):
    """``POST /api/v1/training-jobs``. Fine-tunes the active version unless told otherwise."""

    model_config = ConfigDict(extra="forbid")
    source: Annotated[DatasetSource | ReviewsSource, Field(discriminator="kind")]
    name: str | None = Field(
        default=None, min_length=1, max_length=120, description="default job-<id>"
    )
    base_version_id: int | None = Field(
        default=None, description="version to fine-tune from; default: the active one"
    )
    from_scratch: bool = Field(default=False, description="random initial weights, no base")
    arch: Literal[ARCHS] | None = Field(  # type: ignore[valid-type]
        default=None, description="default: the base version's (amaresnet18 from scratch)"
    )
    epochs: int = Field(default=10, ge=1, le=1000)
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="no epoch starts that would end past it; a job still training past it "
        "fails (ran out of time)",
    )
    seed: int = Field(default=0, ge=0)
    samples_per_epoch: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=50, ge=1, le=4096)
    lr: float | None = Field(
        default=None, gt=0, le=1, description="default 1e-4 fine-tuning, 1e-3 from scratch"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="constant: the paper's Adam at lr; cosine: lr annealed step by step to 1 % "
        "of it over `epochs` (set `epochs` to what the job will reach within its time budget)",
    )
    keep: Literal["best", "last"] = Field(
        default="best",
        description="best: the epoch best by validation F1, with early stopping; last: the "
        "run's final epoch (the end of a cosine schedule), nothing stops early",
    )
    guided_crops: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of patches cropped where the simulated artifact shows most (clean "
        "ones by a phantom artifact); 0: random anatomy crops, as `amaqc train --guided-crops`",
    )
    patch_floor: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="a simulated artifact's patch is labelled artifact only where the artifact "
        "changed it visibly (RMS change in the patch / RMS of the clean slice >= this; 0.05 = "
        "the slice visibility floor); 0: every patch carries its slice's label, as `amaqc train "
        "--patch-floor`",
    )
    patch: int | None = Field(default=None, ge=16, description="default: the base version's")
    size: int | None = Field(default=None, ge=16, description="default: the base version's")
    auto_activate: bool = Field(
        default=False,
        description="activate the new version if it beats the active one on the fixed "
        "validation set",
    )


class TrainingJobAccepted(BaseModel):
    job_id: int
    status_url: str
    events_url: str


class TrainingJobPublic(BaseModel):
    id: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    source: dict[str, Any]
    params: dict[str, Any]
    base_version_id: int | None
    result_version_id: int | None
    cancel_requested: bool
    progress: dict[str, Any] = Field(
        description="epoch, epochs, step, steps, loss, val (latest validation metrics), "
        "eta_s, elapsed_s"
    )
    log: list[str] = Field(description="the last lines of the job's log")
    error: str | None = Field(description="why it failed or was cancelled")
    activation: dict[str, Any] | None = Field(
        description="auto-activation decision with both versions' numbers on the fixed "
        "validation set"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class TrainingJobsPublic(BaseModel):
    items: list[TrainingJobPublic]
    next_cursor: int | None


class ModelVersionDetail(BaseModel):
    id: int
    name: str
    arch: str
    threshold: float = Field(
        description="the decision threshold for a series whose acquisition family is unknown"
    )
    acquisition_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="the threshold for a series of each acquisition family (epi: echo-planar; "
        "non_epi) where the version has one of its own; {} for one threshold for all",
    )
    active: bool
    shadow: bool = Field(description="scores new series beside the active version (shadow mode)")
    created_at: datetime
    checkpoint_path: str
    sha256: str
    parent_id: int | None
    training_job_id: int | None
    metrics: dict[str, Any]
    data_summary: dict[str, Any] | None
    validation: dict[str, Any] | None = Field(
        description="metrics on the fixed validation set, beside the then-active version's"
    )
    roc_url: str | None


class ModelVersionsPublic(BaseModel):
    items: list[ModelVersionDetail]
    active_id: int | None
    shadow_id: int | None


Label = Literal["artifact", "clean"]


class ShadowPairPublic(BaseModel):
    series_id: int
    active_version_id: int
    active_label: Label
    active_probability: float
    shadow_label: Label
    shadow_probability: float
    agree: bool


class LabelCounts(BaseModel):
    artifact: int
    clean: int


class ShadowReport(BaseModel):
    """The series a version scored in shadow, beside the verdict users saw for each."""

    version_id: int
    name: str
    in_shadow: bool = Field(description="whether it is in shadow mode now")
    series: int = Field(description="series scored by both")
    agree: int = Field(description="series where both gave the same label")
    agreement: float | None = Field(description="agree / series; null with no series")
    active_labels: LabelCounts
    shadow_labels: LabelCounts
    mean_abs_probability_diff: float | None = Field(
        description="mean |active - shadow| series probability; null with no series"
    )
    thresholds: dict[str, list[float]] = Field(
        description="distinct thresholds of the compared verdicts: `active`, `shadow`"
    )
    rules: list[str] = Field(description="series rule(s) the shadow verdicts used")
    items: list[ShadowPairPublic] = Field(description="per series, newest series first")
    next_cursor: int | None


class ActivationPublic(BaseModel):
    id: int
    version_id: int
    previous_version_id: int | None
    kind: Literal["register", "explicit", "auto", "rollback"]
    key_id: int | None
    job_id: int | None
    undone: bool
    details: dict[str, Any]
    created_at: datetime


class ActivationsPublic(BaseModel):
    items: list[ActivationPublic]


def job_public(job: TrainingJob) -> TrainingJobPublic:
    return TrainingJobPublic(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        source=job.source,
        params=job.params,
        base_version_id=job.base_version_id,
        result_version_id=job.result_version_id,
        cancel_requested=job.cancel_requested,
        progress=job.progress or {},
        log=job.log.splitlines() if job.log else [],
        error=job.error,
        activation=job.activation,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
    )


def version_detail(
    version: ModelVersion, job_id: int | None, roc_url: str | None
) -> ModelVersionDetail:
    return ModelVersionDetail(
        id=version.id,
        name=version.name,
        arch=version.arch,
        threshold=version.threshold,
        acquisition_thresholds=version.acquisition_thresholds or {},
        active=version.active,
        shadow=version.shadow,
        created_at=version.created_at,
        checkpoint_path=version.checkpoint_path,
        sha256=version.sha256,
        parent_id=version.parent_id,
        training_job_id=job_id,
        metrics=version.metrics,
        data_summary=version.data_summary,
        validation=version.validation,
        roc_url=roc_url if version.roc_path else None,
    )


def activation_public(activation: ModelActivation) -> ActivationPublic:
    return ActivationPublic(
        id=activation.id,
        version_id=activation.version_id,
        previous_version_id=activation.previous_version_id,
        kind=activation.kind,  # type: ignore[arg-type]
        key_id=activation.key_id,
        job_id=activation.job_id,
        undone=activation.undone,
        details=activation.details,
        created_at=activation.created_at,
    )


def _label(label: int) -> Label:
    return "artifact" if label else "clean"


def shadow_report(
    version: ModelVersion,
    summary: ShadowSummary,
    pairs: list[ShadowPair],
    next_cursor: int | None,
) -> ShadowReport:
    n = summary.series
    return ShadowReport(
        version_id=version.id,
        name=version.name,
        in_shadow=version.shadow,
        series=n,
        agree=summary.agree,
        agreement=summary.agree / n if n else None,
        active_labels=LabelCounts(
            artifact=summary.active_artifacts, clean=n - summary.active_artifacts
        ),
        shadow_labels=LabelCounts(
            artifact=summary.shadow_artifacts, clean=n - summary.shadow_artifacts
        ),
        mean_abs_probability_diff=summary.mean_abs_diff,
        thresholds={"active": summary.active_thresholds, "shadow": summary.shadow_thresholds},
        rules=summary.rules,
        items=[
            ShadowPairPublic(
                series_id=p.series_id,
                active_version_id=p.active.model_version_id,
                active_label=_label(p.active.label),
                active_probability=p.active.probability,
                shadow_label=_label(p.shadow.label),
                shadow_probability=p.shadow.probability,
                agree=p.active.label == p.shadow.label,
            )
            for p in pairs
        ],
        next_cursor=next_cursor,
    )
