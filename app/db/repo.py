"""Every query the service runs, as small repository-style functions on a ``Session``.

Handlers, the worker and the CLI call these; none of them builds SQL itself. Functions flush
but never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.security import generate_key, hash_key, visible_prefix

from .models import (
    ROLES,
    ApiKey,
    Instance,
    InstanceVerdict,
    ModelVersion,
    Series,
    SeriesVerdict,
    Study,
)
from .types import utcnow

# --- keys ------------------------------------------------------------------------------


def create_api_key(session: Session, name: str, role: str) -> tuple[ApiKey, str]:
    """A new key row and the plain key (returned once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name.strip():
        raise ValueError("key name must not be empty")
    plain = generate_key()
    key = ApiKey(name=name, role=role, prefix=visible_prefix(plain), key_hash=hash_key(plain))
    session.add(key)
    session.flush()
    return key, plain


def find_api_key(session: Session, plain: str) -> ApiKey | None:
    """The non-revoked key whose hash matches ``plain``."""
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(plain), ApiKey.revoked.is_(False))
    )


def api_keys_named(session: Session, name: str) -> list[ApiKey]:
    """Every key called ``name`` (revoked ones too), oldest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.name == name).order_by(ApiKey.id)))


def count_api_keys(session: Session, role: str | None = None) -> int:
    query = select(func.count(ApiKey.id))
    if role is not None:
        query = query.where(ApiKey.role == role)
    return int(session.scalar(query) or 0)


# --- model versions --------------------------------------------------------------------


def active_model_version(session: Session) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.active.is_(True)).order_by(ModelVersion.id.desc())
    )


def model_version_by_sha(session: Session, sha256: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.sha256 == sha256))


def add_model_version(session: Session, version: ModelVersion, *, activate: bool) -> ModelVersion:
    session.add(version)
    session.flush()
    if activate:
        activate_model_version(session, version.id)
    return version


def activate_model_version(session: Session, version_id: int) -> None:
    """Make ``version_id`` the only active version (and no longer the shadow, if it was)."""
    session.execute(update(ModelVersion).values(active=ModelVersion.id == version_id))
    session.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(shadow=False))
    session.flush()


def shadow_model_version(session: Session) -> ModelVersion | None:
    """The version in shadow mode, if any (never the active one)."""
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.shadow.is_(True), ModelVersion.active.is_(False))
        .order_by(ModelVersion.id.desc())
    )


def set_shadow_model_version(session: Session, version_id: int | None) -> None:
    """Make ``version_id`` the only version in shadow mode (None: none)."""
    session.execute(update(ModelVersion).values(shadow=ModelVersion.id == version_id))
    session.flush()


# --- ingest ----------------------------------------------------------------------------


def get_or_create_study(session: Session, study_uid: str) -> Study:
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        study = Study(study_uid=study_uid)
        session.add(study)
        session.flush()
    return study


def series_by_uid(session: Session, series_uid: str, uploader_key_id: int) -> Series | None:
    """The uploader's own series of this Series Instance UID (another key's is not seen)."""
    return session.scalar(
        select(Series).where(
            Series.series_uid == series_uid, Series.uploader_key_id == uploader_key_id
        )
    )


def add_series(session: Session, series: Series) -> Series:
    session.add(series)
    session.flush()
    return series


def stored_instances(
    session: Session, series: Series, files: Sequence[tuple[str, str | None]]
) -> list[Instance]:
    """The instances already stored that files of (SHA-256, SOPInstanceUID) may repeat, oldest
    first: those with the same bytes in ``series`` and those with the same SOPInstanceUID in a
    series of the same uploader (never in another key's). The caller matches frame indexes."""
    shas = sorted({sha for sha, _ in files})
    uids = sorted({uid for _, uid in files if uid is not None})
    cond = and_(Instance.series_id == series.id, Instance.sha256.in_(shas))
    if uids:
        uploaders = select(Series.id).where(Series.uploader_key_id == series.uploader_key_id)
        cond = or_(
            cond, and_(Instance.sop_instance_uid.in_(uids), Instance.series_id.in_(uploaders))
        )
    return list(session.scalars(select(Instance).where(cond).order_by(Instance.id)))


def series_of_sop_uid(session: Session, sop_uid: str, uploader_key_id: int) -> Series | None:
    """The uploader's series that already holds an instance with this SOPInstanceUID."""
    return session.scalar(
        select(Series)
        .join(Instance, Instance.series_id == Series.id)
        .where(Instance.sop_instance_uid == sop_uid, Series.uploader_key_id == uploader_key_id)
        .limit(1)
    )


def add_instances(session: Session, instances: Sequence[Instance]) -> None:
    """Insert an upload's new instances in one flush (one multi-row INSERT on PostgreSQL)."""
    session.add_all(instances)
    session.flush()


def mark_queued(session: Session, series: Series, *, complete: bool | None = None) -> None:
    if complete is not None:
        series.complete = complete
    series.status = "queued"
    series.error = None
    series.worker = None
    series.queued_at = utcnow()
    session.flush()


# --- worker ----------------------------------------------------------------------------


def get_series(session: Session, series_id: int) -> Series | None:
    return session.get(Series, series_id)


def series_instances(session: Session, series_id: int) -> list[Instance]:
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.series_id == series_id)
            .order_by(Instance.instance_number.is_(None), Instance.instance_number, Instance.id)
        )
    )


def instance_verdicts(
    session: Session, instance_ids: Sequence[int], model_version_id: int, *, shadow: bool = False
) -> dict[int, InstanceVerdict]:
    """Verdicts of ``model_version_id`` for these instances, by instance id (its shadow
    verdicts with ``shadow=True``)."""
    if not instance_ids:
        return {}
    rows = session.scalars(
        select(InstanceVerdict).where(
            InstanceVerdict.instance_id.in_(list(instance_ids)),
            InstanceVerdict.model_version_id == model_version_id,
            InstanceVerdict.shadow.is_(shadow),
        )
    )
    return {v.instance_id: v for v in rows}


def latest_instance_verdicts(
    session: Session, instance_ids: Sequence[int]
) -> dict[int, InstanceVerdict]:
    """The newest verdict of each instance, whatever the model version; never a shadow one."""
    if not instance_ids:
        return {}
    rows = session.scalars(
        select(InstanceVerdict)
        .where(
            InstanceVerdict.instance_id.in_(list(instance_ids)),
            InstanceVerdict.shadow.is_(False),
        )
        .order_by(InstanceVerdict.id)
    )
    return {v.instance_id: v for v in rows}


def add_instance_verdicts(session: Session, verdicts: Sequence[InstanceVerdict]) -> None:
    """Insert a series' slice verdicts in one flush (one multi-row INSERT, not one per slice)."""
    session.add_all(verdicts)
    session.flush()


def series_verdict(
    session: Session, series_id: int, model_version_id: int | None = None, *, shadow: bool = False
) -> SeriesVerdict | None:
    """The verdict of ``model_version_id`` (default: the newest of any version); a shadow one
    only with ``shadow=True``, so the default is the verdict users see."""
    query = select(SeriesVerdict).where(
        SeriesVerdict.series_id == series_id, SeriesVerdict.shadow.is_(shadow)
    )
    if model_version_id is not None:
        query = query.where(SeriesVerdict.model_version_id == model_version_id)
    return session.scalar(query.order_by(SeriesVerdict.id.desc()).limit(1))


def newest_verdict_id() -> Any:
    """A scalar subquery: the id of the newest non-shadow verdict of the outer query's Series
    (the verdict users see)."""
    return (
        select(func.max(SeriesVerdict.id))
        .where(SeriesVerdict.series_id == Series.id, SeriesVerdict.shadow.is_(False))
        .correlate(Series)
        .scalar_subquery()
    )


def put_series_verdict(session: Session, values: dict[str, Any]) -> SeriesVerdict:
    """Insert the verdict of (series, model version, shadow), or update the one that exists."""
    verdict = series_verdict(
        session,
        values["series_id"],
        values["model_version_id"],
        shadow=bool(values.get("shadow", False)),
    )
    if verdict is None:
        verdict = SeriesVerdict(**values)
        session.add(verdict)
    else:
        for name, value in values.items():
            setattr(verdict, name, value)
    session.flush()
    return verdict


def mark_processing(session: Session, series: Series, worker: str | None = None) -> None:
    """``worker``: the heartbeat name of the process doing it (see ``app.db.heartbeats``)."""
    series.status = "processing"
    series.worker = worker
    series.started_at = utcnow()
    series.attempts += 1
    session.flush()


def mark_finished(session: Session, series: Series, status: str, error: str | None) -> None:
    series.status = status
    series.error = error
    series.finished_at = utcnow()
    session.flush()


# --- sweeper ---------------------------------------------------------------------------


def stable_series(session: Session, stable_for: timedelta) -> list[Series]:
    """Slice-built series with no new instance for ``stable_for``: ready for a verdict."""
    cutoff = utcnow() - stable_for
    return list(
        session.scalars(
            select(Series).where(
                Series.complete.is_(False),
                Series.status == "receiving",
                Series.last_instance_at <= cutoff,
            )
        )
    )


def stuck_series(session: Session, stuck_for: timedelta) -> list[Series]:
    """Series queued or processing for longer than ``stuck_for`` (a lost job)."""
    cutoff = utcnow() - stuck_for
    return list(
        session.scalars(
            select(Series).where(
                or_(
                    and_(Series.status == "queued", Series.queued_at <= cutoff),
                    and_(Series.status == "processing", Series.started_at <= cutoff),
                )
            )
        )
    )


# --- read side -------------------------------------------------------------------------


def get_instance(session: Session, instance_id: int) -> Instance | None:
    return session.get(Instance, instance_id)


@dataclass(frozen=True)
class SeriesPage:
    items: list[tuple[Series, SeriesVerdict | None]]
    next_cursor: int | None


def list_series(
    session: Session,
    *,
    uploader_key_id: int | None,
    flagged: bool | None,
    since: datetime | None,
    limit: int,
    cursor: int | None,
) -> SeriesPage:
    """Newest first, keyset-paginated on the id: ``cursor`` is the last id of the previous page.

    ``flagged=True``: only series whose newest verdict is an artifact; ``False``: only clean.
    """
    query = select(Series, SeriesVerdict).outerjoin(
        SeriesVerdict, SeriesVerdict.id == newest_verdict_id()
    )
    if uploader_key_id is not None:
        query = query.where(Series.uploader_key_id == uploader_key_id)
    if flagged is not None:
        query = query.where(SeriesVerdict.label == int(flagged))
    if since is not None:
        query = query.where(Series.received_at >= since)
    if cursor is not None:
        query = query.where(Series.id < cursor)
    rows = session.execute(query.order_by(Series.id.desc()).limit(limit + 1)).all()
    # an outer join: v is None for a series without a verdict
    items: list[tuple[Series, SeriesVerdict | None]] = [(s, v) for s, v in rows[:limit]]
    next_cursor = items[-1][0].id if len(rows) > limit and items else None
    return SeriesPage(items, next_cursor)


def model_version(session: Session, version_id: int) -> ModelVersion | None:
    return session.get(ModelVersion, version_id)


# --- metrics ---------------------------------------------------------------------------


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Series.status, func.count(Series.id)).group_by(Series.status))
    return {status: int(n) for status, n in rows}


def verdict_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(SeriesVerdict.label, func.count(SeriesVerdict.id))
        .where(SeriesVerdict.shadow.is_(False))
        .group_by(SeriesVerdict.label)
    )
    return {int(label): int(n) for label, n in rows}


def processing_seconds(session: Session) -> tuple[int, float]:
    """(number of finished series, total seconds from start to finish)."""
    rows = session.execute(
        select(Series.started_at, Series.finished_at).where(
            Series.status == "done", Series.started_at.is_not(None)
        )
    ).all()
    total = sum((f - s).total_seconds() for s, f in rows if f is not None and s is not None)
    return len(rows), total
