"""Queries of retraining: training jobs, the model registry and its activation history.

Same rules as :mod:`app.db.repo`: small functions on a ``Session`` that flush but never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import Session, aliased

from .models import JOB_FINISHED, ModelActivation, ModelVersion, SeriesVerdict, TrainingJob
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


# --- shadow report ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowPair:
    """One series scored by both: its user-facing verdict and the shadow version's."""

    series_id: int
    active: SeriesVerdict
    shadow: SeriesVerdict


@dataclass(frozen=True)
class ShadowSummary:
    series: int
    agree: int
    active_artifacts: int
    shadow_artifacts: int
    mean_abs_diff: float | None
    active_thresholds: list[float]
    shadow_thresholds: list[float]
    rules: list[str]


def _shadow_pairs(version_id: int) -> tuple[Any, Any, Select[Any]]:
    """(A, S, query): each shadow series verdict S of ``version_id`` joined to the series'
    user-facing verdict A (its newest non-shadow verdict) when that is another version's."""
    active, shadow = aliased(SeriesVerdict), aliased(SeriesVerdict)
    newest = (
        select(func.max(SeriesVerdict.id))
        .where(SeriesVerdict.series_id == shadow.series_id, SeriesVerdict.shadow.is_(False))
        .correlate(shadow)
        .scalar_subquery()
    )
    query = (
        select(shadow)
        .join(active, active.id == newest)
        .where(
            shadow.model_version_id == version_id,
            shadow.shadow.is_(True),
            active.model_version_id != version_id,
        )
    )
    return active, shadow, query


def shadow_summary(session: Session, version_id: int) -> ShadowSummary:
    active, shadow, pairs = _shadow_pairs(version_id)
    agree = case((active.label == shadow.label, 1), else_=0)
    row = session.execute(
        pairs.with_only_columns(
            func.count(shadow.id),
            func.coalesce(func.sum(agree), 0),
            func.coalesce(func.sum(active.label), 0),
            func.coalesce(func.sum(shadow.label), 0),
            func.avg(func.abs(active.probability - shadow.probability)),
        )
    ).one()

    def distinct(column: Any) -> list[Any]:
        return sorted(session.scalars(pairs.with_only_columns(column).distinct()))

    return ShadowSummary(
        series=int(row[0]),
        agree=int(row[1]),
        active_artifacts=int(row[2]),
        shadow_artifacts=int(row[3]),
        mean_abs_diff=None if row[4] is None else float(row[4]),
        active_thresholds=distinct(active.threshold),
        shadow_thresholds=distinct(shadow.threshold),
        rules=distinct(shadow.rule),
    )


def shadow_pairs(
    session: Session, version_id: int, *, limit: int, cursor: int | None
) -> list[ShadowPair]:
    """Series scored by both, newest series first; ``cursor`` is the last series id shown."""
    active, shadow, pairs = _shadow_pairs(version_id)
    query = pairs.add_columns(active)
    if cursor is not None:
        query = query.where(shadow.series_id < cursor)
    rows = session.execute(query.order_by(shadow.series_id.desc()).limit(limit))
    return [ShadowPair(s.series_id, a, s) for s, a in rows]
