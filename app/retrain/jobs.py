"""Training jobs, API side (torch-free): create one from a request, cancel one.

A job row is the source of truth; the Celery message on the ``training`` queue only carries
its id. :func:`create_job` checks everything that can be checked without reading the data
(the dataset folder, the base version's checkpoint header, the architecture), so a bad
request is a 4xx naming the problem rather than a job that fails later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.api.schemas_training import DatasetSource, TrainingJobCreate
from app.config import Settings
from app.db import repo, repo_training
from app.db.models import JOB_FINISHED, TrainingJob
from app.model_versions import CheckpointUnusable, checkpoint_metadata
from app.queue import enqueue_training

from .sources import DataSourceError, resolve_dataset, reviewed_slices, unconfirmed_model_labels

FROM_SCRATCH = {"arch": "amaresnet18", "patch": 64, "size": 256, "lr": 1e-3}


class JobRequestError(Exception):
    """A training-job request or action refused, with the HTTP status to answer."""

    def __init__(self, detail: str, status_code: int = 422) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code


def _source(session: Session, settings: Settings, body: TrainingJobCreate) -> dict[str, Any]:
    try:
        if isinstance(body.source, DatasetSource):
            folder = resolve_dataset(settings.data_dir, body.source.path)
            rel = folder.relative_to(settings.data_dir.resolve()).as_posix()
            return {"kind": "dataset", "path": rel}
        n = len(reviewed_slices(session))
        if n == 0:
            raise DataSourceError(
                "source 'reviews': no reviewed series to train on yet (radiographers' reviews "
                "become training data); use a dataset source instead"
            )
        return {
            "kind": "reviews",
            "reviewed_slices": n,
            # model-accepted slice labels the reader did not confirm: not training data
            "unconfirmed_model_labels_left_out": unconfirmed_model_labels(session),
        }
    except DataSourceError as exc:
        raise JobRequestError(f"source: {exc}") from None


def _base(session: Session, body: TrainingJobCreate) -> tuple[int | None, dict[str, Any]]:
    """The base version id and the params it fixes (arch, its config, patch and size)."""
    if body.from_scratch:
        if body.base_version_id is not None:
            raise JobRequestError("give base_version_id or from_scratch, not both")
        arch = body.arch or FROM_SCRATCH["arch"]
        return None, {"arch": arch, "arch_config": {}, "patch": FROM_SCRATCH["patch"], "size": 256}
    if body.base_version_id is not None:
        base = repo.model_version(session, body.base_version_id)
        if base is None:
            raise JobRequestError(
                f"base_version_id: model version {body.base_version_id} not found"
            )
    else:
        base = repo.active_model_version(session)
        if base is None:
            raise JobRequestError("no active model version to fine-tune; set from_scratch")
    try:
        meta = checkpoint_metadata(Path(base.checkpoint_path))
    except CheckpointUnusable as exc:
        raise JobRequestError(
            f"base model version {base.id} cannot be fine-tuned: {exc}", 409
        ) from None
    if body.arch is not None and body.arch != base.arch:
        raise JobRequestError(
            f"arch: base model version {base.id} is {base.arch}; fine-tuning keeps the "
            f"architecture (leave arch out, or set from_scratch for {body.arch})"
        )
    size = int((meta.get("normalization") or {}).get("size", FROM_SCRATCH["size"]))
    return base.id, {
        "arch": base.arch,
        "arch_config": dict(meta.get("arch_config") or {}),
        "patch": int(meta.get("patch_size", FROM_SCRATCH["patch"])),
        "size": size,
    }


def create_job(
    session: Session, settings: Settings, body: TrainingJobCreate, *, key_id: int | None
) -> TrainingJob:
    """A queued job row for ``body`` (the caller commits, then enqueues it)."""
    source = _source(session, settings, body)
    base_id, fixed = _base(session, body)
    patch = body.patch or fixed["patch"]
    size = body.size or fixed["size"]
    if patch > size:
        raise JobRequestError(f"patch ({patch}) must not exceed size ({size})")
    if body.name is not None and repo_training.model_version_by_name(session, body.name):
        raise JobRequestError(f"name: a model version named {body.name!r} exists", 409)
    params = {
        "name": body.name,
        "arch": fixed["arch"],
        "arch_config": fixed["arch_config"],
        "from_scratch": body.from_scratch,
        "epochs": body.epochs,
        "time_budget_s": body.time_budget_s,
        "seed": body.seed,
        "samples_per_epoch": body.samples_per_epoch,
        "batch_size": body.batch_size,
        "lr": body.lr or (FROM_SCRATCH["lr"] if body.from_scratch else 1e-4),
        "lr_schedule": body.lr_schedule,
        "keep": body.keep,
        "guided_crops": body.guided_crops,
        "patch_floor": body.patch_floor,
        "patch": patch,
        "size": size,
        "auto_activate": body.auto_activate,
    }
    return repo_training.add_training_job(
        session,
        TrainingJob(
            status="queued",
            source=source,
            params=params,
            base_version_id=base_id,
            requested_by_key_id=key_id,
            progress={"epochs": body.epochs},
            log="",
        ),
    )


def submit_job(
    session: Session, settings: Settings, body: TrainingJobCreate, *, key_id: int | None
) -> TrainingJob:
    """Create the job, commit, then queue it on ``training`` (the API and the admin pages
    both start jobs this way). 503 when the broker is unreachable: the job is then failed,
    since nothing would ever run it."""
    job = create_job(session, settings, body, key_id=key_id)
    session.commit()
    if not enqueue_training(settings.broker_url, job.id):  # after the commit
        fail_unqueued(session, job)
        session.commit()
        raise JobRequestError(
            f"the broker is unreachable; training job {job.id} was not queued", 503
        )
    return job


def cancel_job(session: Session, job: TrainingJob) -> TrainingJob:
    """Ask a job to stop: a queued one is cancelled now, a running one at its next training
    step (the worker marks it). 409 for a finished job."""
    if job.status in JOB_FINISHED:
        raise JobRequestError(f"training job {job.id} already {job.status}; nothing to cancel", 409)
    job.cancel_requested = True
    session.flush()
    reason = "cancelled before it started; the active model is unchanged"
    if repo_training.cancel_if_queued(session, job.id, reason):
        session.refresh(job)
    return job


def fail_unqueued(session: Session, job: TrainingJob) -> None:
    """The broker refused the job: it will never run, so it fails now and says why."""
    repo_training.finish_training_job(
        session, job, "failed", "the broker was unreachable; nothing was trained, try again"
    )
