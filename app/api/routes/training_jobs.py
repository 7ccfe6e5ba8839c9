"""Training jobs (admin keys only): start, watch (JSON or server-sent events), cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminKey, SessionDep, SettingsDep, require_role
from app.api.schemas_training import (
    TrainingJobAccepted,
    TrainingJobCreate,
    TrainingJobPublic,
    TrainingJobsPublic,
    job_public,
)
from app.config import Settings
from app.db import repo_training
from app.db.models import JOB_FINISHED, TrainingJob
from app.db.session import new_session
from app.retrain.jobs import JobRequestError, cancel_job, submit_job

router = APIRouter(
    prefix="/training-jobs", tags=["retraining"], dependencies=[require_role("admin")]
)

#: how often the event stream looks at the job row, and sends a keep-alive comment
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


def _job(job_id: int, session: SessionDep) -> TrainingJob:
    job = repo_training.get_training_job(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"training job {job_id} not found")
    return job


JobDep = Annotated[TrainingJob, Depends(_job)]


def _refused(exc: JobRequestError) -> HTTPException:
    return HTTPException(exc.status_code, exc.detail)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=TrainingJobAccepted)
def start_training_job(
    body: TrainingJobCreate,
    key: AdminKey,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> TrainingJobAccepted:
    """Queue a training job on the ``training`` queue; 202 with its id and URLs."""
    try:
        job = submit_job(session, settings, body, key_id=key.id)
    except JobRequestError as exc:
        raise _refused(exc) from None
    return TrainingJobAccepted(
        job_id=job.id,
        status_url=request.url_for("get_training_job", job_id=job.id).path,
        events_url=request.url_for("training_job_events", job_id=job.id).path,
    )


@router.get("", response_model=TrainingJobsPublic)
def list_training_jobs(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> TrainingJobsPublic:
    """Jobs newest first."""
    jobs = repo_training.list_training_jobs(session, limit=limit + 1, cursor=cursor)
    page = jobs[:limit]
    return TrainingJobsPublic(
        items=[job_public(j) for j in page],
        next_cursor=page[-1].id if len(jobs) > limit and page else None,
    )


@router.get("/{job_id}", response_model=TrainingJobPublic, name="get_training_job")
def get_training_job(job: JobDep) -> TrainingJobPublic:
    """Status, progress (epoch, step, loss, latest validation metrics, ETA), log tail, and
    for a finished job the version it registered and the activation decision."""
    return job_public(job)


@router.delete("/{job_id}", status_code=status.HTTP_202_ACCEPTED, response_model=TrainingJobPublic)
def cancel_training_job(job: JobDep, session: SessionDep) -> TrainingJobPublic:
    """Cancel: a queued job at once, a running one at its next training step (the active
    model is never touched); 409 when the job has finished."""
    try:
        cancel_job(session, job)
    except JobRequestError as exc:
        raise _refused(exc) from None
    session.commit()
    return job_public(job)


def _snapshot(settings: Settings, job_id: int) -> TrainingJobPublic | None:
    session = new_session(settings.database_url)
    try:
        job = repo_training.get_training_job(session, job_id)
        return job_public(job) if job else None
    finally:
        session.close()


@router.get("/{job_id}/events", name="training_job_events")
async def training_job_events(
    job: JobDep, settings: SettingsDep, request: Request
) -> StreamingResponse:
    """Server-sent events: ``progress`` (the job as JSON) whenever it changes, then ``end``
    once it has finished. ``EventSource`` in a browser, ``curl -N`` on a terminal."""
    job_id = job.id

    async def events() -> AsyncIterator[str]:
        last, idle = "", 0.0
        while True:
            view = await run_in_threadpool(_snapshot, settings, job_id)
            if view is None:
                yield f"event: end\ndata: {json.dumps({'id': job_id, 'status': 'deleted'})}\n\n"
                return
            data = view.model_dump_json()
            if data != last:
                last, idle = data, 0.0
                yield f"event: progress\ndata: {data}\n\n"
            if view.status in JOB_FINISHED:
                yield f"event: end\ndata: {json.dumps({'id': job_id, 'status': view.status})}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
