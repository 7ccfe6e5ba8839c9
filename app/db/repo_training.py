"""Queries of retraining: training jobs, the model registry and its activation history.

Same rules as :mod:`app.db.repo`: small functions on a ``Session`` that flush but never commit.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import JOB_FINISHED, ModelActivation, ModelVersion, TrainingJob
from .types import utcnow

# --- training jobs ---------------------------------------------------------------------


def add_training_job(session: Session, job: TrainingJob) -> TrainingJob:
    session.add(job)
    session.flush()
    return job


def get_training_job(session: Session, job_id: int) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def list_training_jobs(session: Session, *, limit: int, cursor: int | None) -> list[TrainingJob]:
    """Newest first; ``cursor`` is the last id of the previous page."""
    query = select(TrainingJob)
    if cursor is not None:
        query = query.where(TrainingJob.id < cursor)
    return list(session.scalars(query.order_by(TrainingJob.id.desc()).limit(limit)))


def claim_training_job(session: Session, job_id: int) -> bool:
    """queued -> running, only if the job is still queued and not cancelled (so a DELETE that
    lands between the worker's read and this write wins)."""
    result = session.execute(
        update(TrainingJob)
        .where(
            TrainingJob.id == job_id,
            TrainingJob.status == "queued",
            TrainingJob.cancel_requested.is_(False),
        )
        .values(
            status="running",
            started_at=utcnow(),
            updated_at=utcnow(),
            attempts=TrainingJob.attempts + 1,
        )
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel_if_queued(session: Session, job_id: int, reason: str) -> bool:
    """queued -> cancelled, only if no worker claimed the job meanwhile."""
    now = utcnow()
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status == "queued")
        .values(status="cancelled", error=reason, finished_at=now, updated_at=now)
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_training_job(
    session: Session, job: TrainingJob, status: str, error: str | None = None
) -> None:
    if status not in JOB_FINISHED:
        raise ValueError(f"a job finishes as one of {JOB_FINISHED}, not {status!r}")
    job.status = status
    job.error = error
    job.finished_at = job.updated_at = utcnow()
    session.flush()


# --- model registry --------------------------------------------------------------------


def list_model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def model_version_by_name(session: Session, name: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name))


def job_of_version(session: Session, version_id: int) -> TrainingJob | None:
    """The training job that registered ``version_id``, if one did."""
    return session.scalar(select(TrainingJob).where(TrainingJob.result_version_id == version_id))


def add_activation(session: Session, activation: ModelActivation) -> ModelActivation:
    session.add(activation)
    session.flush()
    return activation


def activations(session: Session, *, limit: int = 100) -> list[ModelActivation]:
    """The activation history, newest first."""
    return list(
        session.scalars(select(ModelActivation).order_by(ModelActivation.id.desc()).limit(limit))
    )


def undoable_activation(session: Session, version_id: int) -> ModelActivation | None:
    """The newest activation of ``version_id`` that a rollback may undo: not a rollback itself,
    not undone already, and with a version that was active before it."""
    return session.scalar(
        select(ModelActivation)
        .where(
            ModelActivation.version_id == version_id,
            ModelActivation.kind != "rollback",
            ModelActivation.undone.is_(False),
        )
        .order_by(ModelActivation.id.desc())
        .limit(1)
    )
