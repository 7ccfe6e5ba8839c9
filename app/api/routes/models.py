"""The model registry (admin keys only): versions, their ROC curves, the activation history,
activate and rollback, shadow mode and its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse

from app.api.deps import AdminKey, SessionDep, require_role
from app.api.schemas_training import (
    ActivationPublic,
    ActivationsPublic,
    ModelVersionDetail,
    ModelVersionsPublic,
    ShadowReport,
    activation_public,
    shadow_report,
    version_detail,
)
from app.db import repo, repo_training
from app.db.models import ModelVersion
from app.retrain.registry import (
    ActivationRefused,
    activate,
    rollback,
    start_shadow,
    stop_shadow,
)

router = APIRouter(prefix="/models", tags=["retraining"], dependencies=[require_role("admin")])


def _version(version_id: int, session: SessionDep) -> ModelVersion:
    version = repo.model_version(session, version_id)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model version {version_id} not found")
    return version


VersionDep = Annotated[ModelVersion, Depends(_version)]


def _detail(version: ModelVersion, session: SessionDep, request: Request) -> ModelVersionDetail:
    job = repo_training.job_of_version(session, version.id)
    roc = request.url_for("model_version_roc", version_id=version.id).path
    return version_detail(version, job.id if job else None, roc)


@router.get("", response_model=ModelVersionsPublic)
def list_model_versions(session: SessionDep, request: Request) -> ModelVersionsPublic:
    """Every registered version, newest first, with its metrics."""
    versions = repo_training.list_model_versions(session)
    return ModelVersionsPublic(
        items=[_detail(v, session, request) for v in versions],
        active_id=next((v.id for v in versions if v.active), None),
        shadow_id=next((v.id for v in versions if v.shadow and not v.active), None),
    )


@router.get("/activations", response_model=ActivationsPublic)
def list_activations(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> ActivationsPublic:
    """The activation history, newest first (register, explicit, auto, rollback)."""
    return ActivationsPublic(
        items=[activation_public(a) for a in repo_training.activations(session, limit=limit)]
    )


@router.post("/rollback", response_model=ActivationPublic)
def rollback_model(key: AdminKey, session: SessionDep) -> ActivationPublic:
    """Re-activate the version that was active before the current one; 409 when there is
    none (or its checkpoint is gone or changed)."""
    try:
        activation = rollback(session, key_id=key.id)
    except ActivationRefused as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    session.commit()
    return activation_public(activation)


@router.get("/{version_id}", response_model=ModelVersionDetail)
def get_model_version(
    version: VersionDep, session: SessionDep, request: Request
) -> ModelVersionDetail:
    """One version: checkpoint, arch, parent, data summary, metrics on the fixed validation
    set beside the version that was active when it was trained, ROC URL."""
    return _detail(version, session, request)


@router.get("/{version_id}/roc.png", name="model_version_roc")
def model_version_roc(version: VersionDep) -> FileResponse:
    """The ROC curve on the fixed validation set (the candidate and the then-active version)."""
    if not version.roc_path or not Path(version.roc_path).is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"model version {version.id} has no ROC curve"
        )
    return FileResponse(version.roc_path, media_type="image/png")


@router.post("/{version_id}/activate", response_model=ActivationPublic | None)
def activate_model_version(
    version: VersionDep, key: AdminKey, session: SessionDep
) -> ActivationPublic | None:
    """Make this version the active one; the next series is scored by it (workers reload
    without a restart). ``null`` when it is active already; 409 when its checkpoint is gone
    or changed since it was registered."""
    try:
        activation = activate(session, version, kind="explicit", key_id=key.id)
    except ActivationRefused as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    session.commit()
    return activation_public(activation) if activation else None


@router.post("/{version_id}/shadow", response_model=ModelVersionDetail)
def start_shadow_mode(
    version: VersionDep, session: SessionDep, request: Request
) -> ModelVersionDetail:
    """Put this version in shadow mode (in place of any other): it scores every new series
    beside the active version without changing any verdict. 409 for the active version, or
    when its checkpoint is gone or changed since it was registered."""
    try:
        start_shadow(session, version)
    except ActivationRefused as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    session.commit()
    return _detail(version, session, request)


@router.delete("/{version_id}/shadow", response_model=ModelVersionDetail)
def stop_shadow_mode(
    version: VersionDep, session: SessionDep, request: Request
) -> ModelVersionDetail:
    """Take this version out of shadow mode (its shadow verdicts stay for the report); 409
    when it is not in shadow mode."""
    if not stop_shadow(session, version):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"model version {version.id} is not in shadow mode"
        )
    session.commit()
    session.refresh(version)
    return _detail(version, session, request)


@router.get("/{version_id}/shadow-report", response_model=ShadowReport)
def get_shadow_report(
    version: VersionDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(description="the last series id shown")] = None,
) -> ShadowReport:
    """Every series this version scored in shadow, beside the verdict users saw (the series'
    newest non-shadow verdict, by another version): agreement, both label counts, mean
    absolute probability difference, the thresholds, and the series newest first."""
    pairs = repo_training.shadow_pairs(session, version.id, limit=limit + 1, cursor=cursor)
    more = len(pairs) > limit
    pairs = pairs[:limit]
    next_cursor = pairs[-1].series_id if more else None
    summary = repo_training.shadow_summary(session, version.id)
    return shadow_report(version, summary, pairs, next_cursor)
