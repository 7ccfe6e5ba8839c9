"""The admin pages (admin keys only; radiographer keys get 403): model versions with their
metrics, ROC curves and activation history; activate and roll back, each after a confirmation
page; shadow mode started and stopped from a version's page, which shows its shadow report; a
form that starts a training job; a job page with live progress and a cancel button.

Server-rendered, and every action is a plain form POST carrying the page's CSRF token, so the
pages work without scripts; ``static/job.js`` adds the live progress bar and loss curve (from
``GET /api/v1/training-jobs/{id}/events``). Actions call the same service functions as the API
(``app.retrain``), so a refused request shows the API's message. URLs carry ids only.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import SessionDep, SettingsDep
from app.api.schemas_training import ARCHS, shadow_report
from app.db import repo, repo_training
from app.db.models import JOB_FINISHED, ModelVersion, TrainingJob
from app.retrain.jobs import JobRequestError, cancel_job, submit_job
from app.retrain.registry import (
    ActivationRefused,
    activate,
    rollback,
    rollback_target,
    start_shadow,
    stop_shadow,
)

from .admin_thresholds import router as thresholds_router
from .admin_views import (
    MORE_SETTINGS,
    activations_view,
    dataset_folders,
    job_view,
    parse_job_request,
    version_view,
    versions_view,
)
from .deps import AdminDep, WebForbidden, WebNotFound, WebUser, render
from .model_card import SPLITS, model_card, read_metadata

router = APIRouter(prefix="/admin", include_in_schema=False)
router.include_router(thresholds_router)  # /admin/thresholds
JOBS_PAGE = 50
SHADOW_ROWS = 20


def _csrf_ok(user: AdminDep, csrf: Annotated[str, Form()] = "") -> WebUser:
    """An admin whose form carries the page's CSRF token (403 otherwise)."""
    if not hmac.compare_digest(csrf, user.csrf):
        raise WebForbidden("missing or wrong CSRF token; reload the page and try again")
    return user


CheckedAdmin = Annotated[WebUser, Depends(_csrf_ok)]


def _back(url: str) -> Response:
    return RedirectResponse(url, status.HTTP_303_SEE_OTHER)


def _version(version_id: int, user: AdminDep, session: SessionDep) -> ModelVersion:
    version = repo.model_version(session, version_id)
    if version is None:
        raise WebNotFound(f"model version {version_id} not found", user)
    return version


def _job(job_id: int, user: AdminDep, session: SessionDep) -> TrainingJob:
    job = repo_training.get_training_job(session, job_id)
    if job is None:
        raise WebNotFound(f"training job {job_id} not found", user)
    return job


VersionDep = Annotated[ModelVersion, Depends(_version)]
JobDep = Annotated[TrainingJob, Depends(_job)]


def _act(
    session: SessionDep,
    action: Callable[[], object],
    redirect: str,
    refused: Callable[[str, int], Response],
) -> Response:
    """Run a registry action and commit, then redirect to ``redirect``; a refusal rolls the
    session back and answers ``refused(message, status)`` (the page again, with the reason)."""
    try:
        action()
    except (ActivationRefused, JobRequestError) as exc:
        session.rollback()
        return refused(exc.detail, exc.status_code)
    session.commit()
    return _back(redirect)


# --- model versions ------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def models_page(request: Request, user: AdminDep, session: SessionDep) -> Response:
    """Versions with their metrics, the rollback target, recent jobs, activation history."""
    try:
        target: ModelVersion | None = rollback_target(session)[0]
        no_rollback = ""
    except ActivationRefused as exc:
        target, no_rollback = None, exc.detail
    return render(
        request,
        "admin.html",
        user,
        versions=versions_view(session),
        activations=activations_view(session),
        rollback_to=target,
        no_rollback=no_rollback,
        jobs=[job_view(j) for j in repo_training.list_training_jobs(session, limit=5, cursor=None)],
    )


def _version_page(session: SessionDep, version: ModelVersion) -> dict[str, Any]:
    names = {v.id: v.name for v in repo_training.list_model_versions(session)}
    job = repo_training.job_of_version(session, version.id)
    view = version_view(version, names, job.id if job else None)
    active = repo.active_model_version(session)
    pairs = repo_training.shadow_pairs(session, version.id, limit=SHADOW_ROWS, cursor=None)
    report = shadow_report(version, repo_training.shadow_summary(session, version.id), pairs, None)
    return {
        "version": view,
        "card": model_card(version, *read_metadata(version)),
        "splits": SPLITS,
        "active": version_view(active, names, None) if active else None,
        "shadow": report,
    }


@router.get("/models/{version_id}", response_class=HTMLResponse)
def model_page(
    request: Request, user: AdminDep, session: SessionDep, version: VersionDep
) -> Response:
    """One version: its model card (``model_card.py``), metrics on the fixed validation set
    beside the then-active version's, the ROC curve, parent."""
    return render(request, "admin_model.html", user, **_version_page(session, version))


@router.post("/models/{version_id}/shadow", response_class=HTMLResponse)
def do_shadow(
    request: Request, user: CheckedAdmin, session: SessionDep, version: VersionDep
) -> Response:
    """Start shadow mode (no confirmation: it changes no verdict); a refusal shows why."""

    def refused(error: str, code: int) -> Response:
        ctx = _version_page(session, version)
        return render(request, "admin_model.html", user, code, error=error, **ctx)

    return _act(
        session, lambda: start_shadow(session, version), f"/admin/models/{version.id}", refused
    )


@router.post("/models/{version_id}/shadow/stop", response_class=HTMLResponse)
def do_stop_shadow(user: CheckedAdmin, session: SessionDep, version: VersionDep) -> Response:
    stop_shadow(session, version)  # not in shadow mode: nothing to do
    session.commit()
    return _back(f"/admin/models/{version.id}")


@router.get("/models/{version_id}/activate", response_class=HTMLResponse)
def confirm_activate(
    request: Request, user: AdminDep, session: SessionDep, version: VersionDep
) -> Response:
    """The confirmation step: what becomes active, what it replaces, both numbers."""
    ctx = _version_page(session, version)
    return render(request, "admin_confirm_activate.html", user, **ctx)


@router.post("/models/{version_id}/activate", response_class=HTMLResponse)
def do_activate(
    request: Request, user: CheckedAdmin, session: SessionDep, version: VersionDep
) -> Response:
    def refused(error: str, code: int) -> Response:
        ctx = _version_page(session, version)
        return render(request, "admin_confirm_activate.html", user, code, error=error, **ctx)

    def act() -> None:
        activate(session, version, kind="explicit", key_id=user.key.id)

    return _act(session, act, "/admin", refused)


@router.get("/rollback", response_class=HTMLResponse)
def confirm_rollback(request: Request, user: AdminDep, session: SessionDep) -> Response:
    current = repo.active_model_version(session)
    try:
        target, undo = rollback_target(session)
    except ActivationRefused as exc:
        return render(
            request, "admin_confirm_rollback.html", user, exc.status_code, error=exc.detail
        )
    names = {v.id: v.name for v in repo_training.list_model_versions(session)}
    return render(
        request,
        "admin_confirm_rollback.html",
        user,
        current=version_view(current, names, None) if current else None,
        target=version_view(target, names, None),
        undo_id=undo.id,
    )


@router.post("/rollback", response_class=HTMLResponse)
def do_rollback(request: Request, user: CheckedAdmin, session: SessionDep) -> Response:
    def refused(error: str, code: int) -> Response:
        return render(request, "admin_confirm_rollback.html", user, code, error=error)

    return _act(session, lambda: rollback(session, key_id=user.key.id), "/admin", refused)


# --- training jobs -------------------------------------------------------------------------


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, user: AdminDep, session: SessionDep) -> Response:
    jobs = repo_training.list_training_jobs(session, limit=JOBS_PAGE, cursor=None)
    return render(request, "admin_jobs.html", user, jobs=[job_view(j) for j in jobs])


def _form_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    settings: SettingsDep,
    values: dict[str, str],
    error: str = "",
    code: int = 200,
) -> Response:
    return render(
        request,
        "admin_job_form.html",
        user,
        code,
        values=values,
        more_open=any(values.get(name) for name in MORE_SETTINGS),
        error=error,
        archs=ARCHS,
        versions=repo_training.list_model_versions(session),
        folders=dataset_folders(settings.data_dir),
    )


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(
    request: Request, user: AdminDep, session: SessionDep, settings: SettingsDep
) -> Response:
    defaults = {"source": "dataset", "epochs": "10", "seed": "0"}
    return _form_page(request, user, session, settings, defaults)


@router.post("/jobs", response_class=HTMLResponse)
async def start_job(
    request: Request, user: CheckedAdmin, session: SessionDep, settings: SettingsDep
) -> Response:
    """Start a job from the form; a refused request shows the form again, filled in, with
    the API's message and status (422, 409, 503)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    form.pop("csrf", None)
    body = parse_job_request(form)
    if isinstance(body, str):
        return _form_page(request, user, session, settings, form, body, 422)
    try:
        job = submit_job(session, settings, body, key_id=user.key.id)
    except JobRequestError as exc:
        session.rollback()
        return _form_page(request, user, session, settings, form, exc.detail, exc.status_code)
    return _back(f"/admin/jobs/{job.id}")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, user: AdminDep, job: JobDep) -> Response:
    """Status, a progress bar and loss curve kept live by ``job.js``, log tail, outcome."""
    return render(request, "admin_job.html", user, job=job_view(job), finished=JOB_FINISHED)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def do_cancel(request: Request, user: CheckedAdmin, session: SessionDep, job: JobDep) -> Response:
    def refused(error: str, code: int) -> Response:
        session.refresh(job)
        ctx = {"job": job_view(job), "finished": JOB_FINISHED}
        return render(request, "admin_job.html", user, code, error=error, **ctx)

    return _act(session, lambda: cancel_job(session, job), f"/admin/jobs/{job.id}", refused)
