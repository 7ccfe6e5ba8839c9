"""The model registry's write side: activate a version, roll back, register a trained one.

Every change of the active version goes through :func:`activate` and lands in the activation
history (``model_activation``). A version is activated only when its checkpoint file is still
the one registered (present, same SHA-256, an amaqc safetensors header): the training worker
loads every checkpoint it registers with torch, so those same bytes load. Inference workers
read the active version per job and reload when it changed: no restart. Shadow mode
(:func:`start_shadow`) goes through the same checkpoint check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import storage
from app.db import repo, repo_training
from app.db.models import ModelActivation, ModelVersion
from app.model_versions import (
    CheckpointUnusable,
    checkpoint_metadata,
    served_acquisition_thresholds,
    served_threshold,
)


class ActivationRefused(Exception):
    """An activation or rollback that must not happen; ``status_code`` is the HTTP answer."""

    def __init__(self, detail: str, status_code: int = 409) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code


def check_checkpoint(version: ModelVersion, refused: str = "is not activated") -> None:
    """Raise :class:`ActivationRefused` unless the version's file is the registered one;
    ``refused`` says what does not happen then."""
    path = Path(version.checkpoint_path)
    try:
        checkpoint_metadata(path)
    except CheckpointUnusable as exc:
        raise ActivationRefused(
            f"model version {version.id} ({version.name}) {refused}: {exc}"
        ) from None
    if storage.sha256_file(path) != version.sha256:
        raise ActivationRefused(
            f"model version {version.id} ({version.name}) {refused}: its checkpoint "
            f"{path.name} changed on disk since it was registered (SHA-256 differs)"
        )


def activate(
    session: Session,
    version: ModelVersion,
    *,
    kind: str,
    key_id: int | None = None,
    job_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> ModelActivation | None:
    """Make ``version`` the active one and record it; None (nothing recorded) when it is the
    active version already."""
    current = repo.active_model_version(session)
    if current is not None and current.id == version.id:
        return None
    check_checkpoint(version)
    repo.activate_model_version(session, version.id)
    return repo_training.add_activation(
        session,
        ModelActivation(
            version_id=version.id,
            previous_version_id=current.id if current else None,
            kind=kind,
            key_id=key_id,
            job_id=job_id,
            details=details or {},
        ),
    )


def start_shadow(session: Session, version: ModelVersion) -> None:
    """Put ``version`` in shadow mode (in place of any other): it scores every new series
    beside the active version, and its verdicts are stored as shadow rows nobody is shown.
    Refused (409) for the active version and for a checkpoint that is gone or changed."""
    if version.active:
        raise ActivationRefused(
            f"model version {version.id} ({version.name}) is the active version: only "
            "another version can run in shadow beside it"
        )
    check_checkpoint(version, "is not put in shadow mode")
    repo.set_shadow_model_version(session, version.id)


def stop_shadow(session: Session, version: ModelVersion) -> bool:
    """Take ``version`` out of shadow mode; False when it was not in it. Its shadow verdicts
    stay (the shadow report still reads them)."""
    if not version.shadow:
        return False
    repo.set_shadow_model_version(session, None)
    return True


def rollback_target(session: Session) -> tuple[ModelVersion, ModelActivation]:
    """The version a rollback would re-activate, and the activation it would undo; raises
    :class:`ActivationRefused` (409) when there is none."""
    current = repo.active_model_version(session)
    if current is None:
        raise ActivationRefused("nothing to roll back: no model version is active")
    last = repo_training.undoable_activation(session, current.id)
    if last is None or last.previous_version_id is None:
        raise ActivationRefused(
            f"nothing to roll back to: model version {current.id} ({current.name}) has no "
            "earlier active version in the activation history"
        )
    target = repo.model_version(session, last.previous_version_id)
    assert target is not None  # a foreign key
    return target, last


def rollback(session: Session, *, key_id: int | None = None) -> ModelActivation:
    """Re-activate the version that was active before the current one was activated; repeated
    rollbacks step further back through the history."""
    target, last = rollback_target(session)
    check_checkpoint(target)
    current_id = last.version_id
    last.undone = True
    activation = activate(
        session,
        target,
        kind="rollback",
        key_id=key_id,
        details={"undid_activation": last.id, "from_version": current_id},
    )
    assert activation is not None  # the target is not the active version
    return activation


def register_trained(
    session: Session,
    path: Path,
    *,
    name: str,
    parent_id: int | None,
    data_summary: dict[str, Any],
    validation: dict[str, Any],
    roc_path: Path | None,
) -> ModelVersion:
    """A new inactive ModelVersion for a checkpoint a training job wrote (and loaded)."""
    meta = checkpoint_metadata(path)
    sha = storage.sha256_file(path)
    existing = repo.model_version_by_sha(session, sha)
    if existing is not None:  # the same bytes: a redelivered job that registered already
        return existing
    if repo_training.model_version_by_name(session, name) is not None:
        name = f"{name}-{sha[:8]}"
    return repo.add_model_version(
        session,
        ModelVersion(
            name=name,
            checkpoint_path=str(path.resolve()),
            sha256=sha,
            arch=str(meta["arch"]),
            threshold=served_threshold(meta),
            acquisition_thresholds=served_acquisition_thresholds(meta),
            metrics=dict(meta.get("metrics") or {}),
            parent_id=parent_id,
            data_summary=data_summary,
            validation=validation,
            roc_path=str(roc_path) if roc_path else None,
        ),
        activate=False,
    )
