"""What the admin pages show, from database rows: model versions with their metrics, the
activation history, training jobs and their progress, and the training-job form's values.

Pure functions of rows and form fields; the routes in ``admin.py`` stay thin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.api.schemas_training import TrainingJobCreate, job_public
from app.db import repo_training
from app.db.models import ApiKey, ModelActivation, ModelVersion, TrainingJob

#: where the form suggests dataset folders (relative to the data dir); any folder under the
#: data dir is accepted
DATASETS_DIR = "datasets"
#: the metrics compared on the fixed validation set, and how the pages name them
COMPARED = (
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("threshold", "threshold"),
)
#: the form's number fields, in the API's names (the first three on show, these under "More
#: settings")
MORE_NUMBER_FIELDS = ("samples_per_epoch", "batch_size", "lr", "guided_crops", "patch_floor")
NUMBER_FIELDS = ("epochs", "time_budget_s", "seed", *MORE_NUMBER_FIELDS)
SIZE_FIELDS = ("patch", "size")
#: the form's select fields (empty: the API's default)
CHOICE_FIELDS = ("lr_schedule", "keep")
#: the fields under the form's "More settings" (open when one of them has a value)
MORE_SETTINGS = (*MORE_NUMBER_FIELDS, *CHOICE_FIELDS, *SIZE_FIELDS, "name")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _number(value: Any, digits: int = 3) -> str:
    return (
        f"{value:.{digits}f}" if isinstance(value, int | float) else "\u2013"
    )  # an en dash: no value


def version_view(
    version: ModelVersion, names: Mapping[int, str], job_id: int | None
) -> dict[str, Any]:
    """One model version as plain values: identity, parent, metrics, data summary."""
    validation = version.validation or {}
    candidate = validation.get("candidate") or {}
    then_active = validation.get("active") or {}
    data = version.data_summary or {}
    source = data.get("source") or {}
    return {
        "id": version.id,
        "name": version.name,
        "arch": version.arch,
        "threshold": _number(version.threshold),
        "active": version.active,
        "shadow": version.shadow and not version.active,
        "created": _when(version.created_at),
        "parent": {"id": version.parent_id, "name": names.get(version.parent_id, "?")}
        if version.parent_id
        else None,
        "job_id": job_id,
        "sha256": version.sha256,
        "checkpoint": Path(version.checkpoint_path).name,
        "f1": _number(candidate.get("f1")),
        "roc_auc": _number(candidate.get("roc_auc")),
        "then_active": {
            "name": then_active.get("name"),
            "f1": _number(then_active.get("f1")),
            "roc_auc": _number(then_active.get("roc_auc")),
            "error": then_active.get("error"),
        }
        if then_active
        else None,
        "comparison": [
            (label, _number(candidate.get(k)), _number(then_active.get(k)))
            for k, label in COMPARED
            if k in candidate or k in then_active
        ],
        "validation_set": validation.get("set"),
        "training_metrics": {
            k: _number(v) for k, v in (version.metrics or {}).items() if isinstance(v, int | float)
        },
        "source": source_text(source),
        "splits": {k: v for k, v in data.items() if k != "source" and isinstance(v, dict)},
        "has_roc": bool(version.roc_path),
    }


def source_text(source: Mapping[str, Any]) -> str:
    if source.get("kind") == "dataset":
        return f"dataset {source.get('path', '?')}"
    if source.get("kind") == "reviews":
        left_out = source.get("unconfirmed_model_labels_left_out")
        note = (
            f"; {left_out} slice labels accepted from the model but not confirmed left out"
            if left_out
            else ""
        )
        return f"reviews ({source.get('reviewed_slices', '?')} reviewed slices{note})"
    return "registered checkpoint" if not source else str(source)


def versions_view(session: Session) -> list[dict[str, Any]]:
    versions = repo_training.list_model_versions(session)
    names = {v.id: v.name for v in versions}
    jobs = {
        j.result_version_id: j.id
        for j in repo_training.list_training_jobs(session, limit=10_000, cursor=None)
        if j.result_version_id is not None
    }
    return [version_view(v, names, jobs.get(v.id)) for v in versions]


def activation_view(
    activation: ModelActivation, names: Mapping[int, str], keys: Mapping[int, str]
) -> dict[str, Any]:
    return {
        "id": activation.id,
        "when": _when(activation.created_at),
        "kind": activation.kind,
        "version": {"id": activation.version_id, "name": names.get(activation.version_id, "?")},
        "previous": {
            "id": activation.previous_version_id,
            "name": names.get(activation.previous_version_id, "?"),
        }
        if activation.previous_version_id
        else None,
        "by": keys.get(activation.key_id) if activation.key_id else None,
        "job_id": activation.job_id,
        "undone": activation.undone,
        "reason": (activation.details or {}).get("reason", ""),
    }


def activations_view(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    names = {v.id: v.name for v in repo_training.list_model_versions(session)}
    history = repo_training.activations(session, limit=limit)
    key_ids = {a.key_id for a in history if a.key_id}
    keys = {k.id: k.name for k in (session.get(ApiKey, i) for i in key_ids) if k is not None}
    return [activation_view(a, names, keys) for a in history]


def fraction_done(status: str, progress: Mapping[str, Any]) -> float:
    """How much of the job is done, 0..1, from its progress (the job page's JS does the same)."""
    if status == "succeeded":
        return 1.0
    epochs = int(progress.get("epochs") or 0)
    epoch, step, steps = (int(progress.get(k) or 0) for k in ("epoch", "step", "steps"))
    if epochs <= 0 or epoch <= 0 or steps <= 0:
        return 0.0
    return max(0.0, min(1.0, ((epoch - 1) * steps + step) / (epochs * steps)))


def job_view(job: TrainingJob) -> dict[str, Any]:
    """The job as the API shows it (``data``, for the page's script) and a few shown values."""
    public = job_public(job).model_dump(mode="json")
    return {
        "id": job.id,
        "status": job.status,
        "source": source_text(job.source),
        "params": job.params,
        "created": _when(job.created_at),
        "finished": _when(job.finished_at),
        "percent": round(100 * fraction_done(job.status, job.progress or {})),
        "progress": job.progress or {},
        "error": job.error,
        "base_version_id": job.base_version_id,
        "result_version_id": job.result_version_id,
        "activation": job.activation,
        "finished_flag": job.finished_at is not None,
        "data": public,
    }


def dataset_folders(data_dir: Path) -> list[str]:
    """Folders under ``<data dir>/datasets`` (relative to the data dir): the form's suggestions."""
    root = data_dir / DATASETS_DIR
    if not root.is_dir():
        return []
    return sorted(f"{DATASETS_DIR}/{p.name}" for p in root.iterdir() if p.is_dir())


def job_request(form: Mapping[str, str]) -> dict[str, Any]:
    """The API's JSON body for ``POST /api/v1/training-jobs`` from the form's fields (empty
    fields are left out, so the API's defaults apply)."""
    kind = form.get("source", "dataset")
    source: dict[str, Any] = {"kind": kind}
    if kind == "dataset":
        source["path"] = form.get("path", "").strip()
    body: dict[str, Any] = {"source": source}
    for name in (*NUMBER_FIELDS, *SIZE_FIELDS, *CHOICE_FIELDS, "base_version_id", "arch", "name"):
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    for name in ("from_scratch", "auto_activate"):
        body[name] = form.get(name) in ("1", "on", "true")
    return body


def parse_job_request(form: Mapping[str, str]) -> TrainingJobCreate | str:
    """The validated request, or the API's 422 message for it ("field: problem; ...")."""
    try:
        return TrainingJobCreate.model_validate(job_request(form))
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
