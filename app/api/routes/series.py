"""``GET /api/v1/series/{id}`` (status, verdict, slices) and ``GET /api/v1/series`` (list)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import CurrentKey, ReadableSeries, SessionDep, SettingsDep
from app.api.schemas import (
    ModelVersionPublic,
    SeriesListPublic,
    SeriesPublic,
    SeriesSummary,
    Timings,
    VerdictPublic,
    instance_public,
    label_name,
)
from app.api.schemas_context import series_context
from app.db import repo
from app.db.models import Series, Study

router = APIRouter(prefix="/series", tags=["series"])


def _timings(series: Series) -> Timings:
    def seconds(start: datetime | None, end: datetime | None) -> float | None:
        return round((end - start).total_seconds(), 3) if start and end else None

    return Timings(
        received_at=series.received_at,
        queued_at=series.queued_at,
        started_at=series.started_at,
        finished_at=series.finished_at,
        processing_seconds=seconds(series.started_at, series.finished_at),
        total_seconds=seconds(series.last_instance_at, series.finished_at),
    )


@router.get("/{series_id}", response_model=SeriesPublic, name="get_series")
def get_series(
    series: ReadableSeries,
    key: CurrentKey,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> SeriesPublic:
    """A series' status, its verdict once done, and each slice's probability and label; for
    radiographer and admin keys also the patient and study context of its DICOM header."""
    verdict = repo.series_verdict(session, series.id)
    instances = repo.series_instances(session, series.id)
    by_instance = (
        repo.instance_verdicts(session, [i.id for i in instances], verdict.model_version_id)
        if verdict
        else repo.latest_instance_verdicts(session, [i.id for i in instances])
    )
    version = repo.model_version(session, verdict.model_version_id) if verdict else None
    items = [instance_public(inst, by_instance.get(inst.id), request) for inst in instances]
    numbers = {inst.id: inst.instance_number for inst in instances}
    return SeriesPublic(
        id=series.id,
        status=series.status,
        error=series.error,
        protocol=series.protocol,
        scanner=series.scanner,
        acquisition=series.acquisition,  # type: ignore[arg-type]
        context=series_context(
            series,
            session.get(Study, series.study_id) if series.study_id is not None else None,
            role=key.role,
            hide_names=settings.hide_patient_names,
        ),
        verdict=VerdictPublic(
            label="artifact" if verdict.label else "clean",
            probability=verdict.probability,
            flagged_slices=list(verdict.flagged),
            flagged_instance_numbers=[numbers.get(i) for i in verdict.flagged],
            flagged_count=verdict.flagged_count,
            rule=verdict.rule,
            threshold=verdict.threshold,
            threshold_source=verdict.threshold_source,  # type: ignore[arg-type]
            threshold_scanner=verdict.threshold_scanner,
            threshold_protocol=verdict.threshold_protocol,
        )
        if verdict
        else None,
        instances=items,
        model_version=ModelVersionPublic(id=version.id, name=version.name, arch=version.arch)
        if version
        else None,
        timings=_timings(series),
        attempts=series.attempts,
    )


@router.get("", response_model=SeriesListPublic)
def list_series(
    key: CurrentKey,
    session: SessionDep,
    request: Request,
    flagged: bool | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        int | None, Query(ge=1, description="next_cursor of the previous page")
    ] = None,
) -> SeriesListPublic:
    """Series newest first (a scanner key sees its own); ``flagged=true``: artifact verdicts."""
    page = repo.list_series(
        session,
        uploader_key_id=key.id if key.role == "scanner" else None,
        flagged=flagged,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return SeriesListPublic(
        items=[
            SeriesSummary(
                id=s.id,
                status=s.status,
                label=label_name(v.label) if v else None,
                probability=v.probability if v else None,
                received_at=s.received_at,
                status_url=request.url_for("get_series", series_id=s.id).path,
            )
            for s, v in page.items
        ],
        next_cursor=page.next_cursor,
    )
