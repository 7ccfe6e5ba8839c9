"""The training service behind ``train_model``: one job row in, a registered ModelVersion out.

Runs in the training worker (``amaqc worker --queues training``, one job at a time). The job's
working folder is ``<data_dir>/training/job-<id>/``; the registered checkpoint and its ROC curve
go to ``<data_dir>/models/``. The active model changes only at the very end, and only when the
job asked for auto-activation and its version beats the active one on the fixed validation set
(:mod:`app.retrain.evaluation`). A job that crashes, runs out of time or is cancelled is marked
so with the reason and leaves the active model as it was.

Progress reaches the row through ``training.fit.train``'s ``on_progress`` callback
(:class:`Reporter`): every epoch, and at most every :data:`WRITE_EVERY_S` seconds within one.
The same callback reads the cancel flag and enforces the time budget, raising
:class:`JobStopped`, so a cancelled job stops at its next training step.

Redelivery (``acks_late``): a finished job is skipped; a job found ``running`` was interrupted
with its worker and resumes from its saved state (``TrainConfig(resume=True)``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

from app.config import Settings
from app.db import repo, repo_training
from app.db.models import JOB_FINISHED, TrainingJob
from app.db.session import session_scope
from app.retrain.sources import DataSourceError, resolve_dataset, reviewed_slices

logger = logging.getLogger(__name__)

WRITE_EVERY_S = 1.0
LOG_LINES = 40
#: at most this many points of the loss curve are kept in ``progress["loss_curve"]``
CURVE_POINTS = 200
#: a job whose worker was lost this many times fails instead of resuming again
MAX_ATTEMPTS = 3


class JobStopped(Exception):
    """The job ends early: ``status`` is ``cancelled`` or ``failed``, ``reason`` says why."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Reporter:
    """``on_progress`` for ``training.fit.train``: writes progress and the log tail to the job row,
    stops the job when it is cancelled or past its time budget."""

    def __init__(self, settings: Settings, job_id: int, params: dict[str, Any]) -> None:
        self.settings = settings
        self.job_id = job_id
        self.epochs = int(params["epochs"])
        self.budget = params.get("time_budget_s")
        self.t0 = time.monotonic()
        self.last_write = 0.0
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.progress: dict[str, Any] = {"epochs": self.epochs}
        self.curve: list[list[float]] = []  # [epochs done (fractional), running loss]
        self.curve_stride = 1  # keep every n-th step; doubles whenever the curve is full
        self.epoch_history: list[dict[str, Any]] = []

    def line(self, text: str, *, write: bool = True) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {text}")
        logger.info("training job %s: %s", self.job_id, text)
        if write:
            self.write()

    def __call__(self, event: dict[str, Any]) -> None:
        elapsed = time.monotonic() - self.t0
        if event["event"] == "step":
            steps = int(event["steps"])
            done = (int(event["epoch"]) * steps + int(event["step"])) / (self.epochs * steps)
            eta = elapsed * (1 - done) / done if done > 0 else None
            if eta is not None and self.budget is not None:
                eta = min(eta, max(0.0, float(self.budget) - elapsed))
            self.progress.update(
                epoch=int(event["epoch"]) + 1,
                step=int(event["step"]),
                steps=steps,
                loss=round(float(event["loss"]), 5),
                eta_s=round(eta, 1) if eta is not None else None,
                elapsed_s=round(elapsed, 1),
            )
            self._curve_point(int(event["epoch"]), int(event["step"]), steps, float(event["loss"]))
            if self.budget is not None and elapsed > float(self.budget):
                raise JobStopped(
                    "failed",
                    f"ran out of time: the {float(self.budget):g} s time budget ended during "
                    f"epoch {self.progress['epoch']} of {self.epochs} (step {event['step']}/"
                    f"{steps}); nothing was registered and the active model is unchanged",
                )
            if time.monotonic() - self.last_write >= WRITE_EVERY_S:
                self.write()
        elif event["event"] == "epoch":
            val = {k: v for k, v in event["val"].items() if k != "confusion"}
            self.progress.update(
                epoch=int(event["epoch"]) + 1,
                train_loss=round(float(event["train_loss"]), 5),
                val=val,
                best_epoch=int(event["best_epoch"]) + 1,
                elapsed_s=round(elapsed, 1),
            )
            self.epoch_history.append(
                {
                    "epoch": int(event["epoch"]) + 1,
                    "train_loss": round(float(event["train_loss"]), 5),
                    "val_f1": val.get("f1"),
                    "val_roc_auc": val.get("roc_auc"),
                }
            )
            self.progress["epoch_history"] = list(self.epoch_history)
            auc = val.get("roc_auc")
            self.line(
                f"epoch {event['epoch'] + 1}/{self.epochs}: loss {event['train_loss']:.4f}, "
                f"val F1 {val['f1']:.3f}, ROC-AUC {auc:.3f}"
                if auc is not None
                else f"epoch {event['epoch'] + 1}/{self.epochs}: loss {event['train_loss']:.4f}, "
                f"val F1 {val['f1']:.3f}"
            )

    def _curve_point(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """One point of the loss curve (x in epochs), thinned so it stays under
        :data:`CURVE_POINTS` points however long the job runs."""
        index = epoch * steps + step
        if index % self.curve_stride and step != steps:
            return
        self.curve.append([round(epoch + step / steps, 4), round(loss, 5)])
        if len(self.curve) > CURVE_POINTS:
            self.curve = self.curve[::2]  # (an odd length: keeps the first and last points)
            self.curve_stride *= 2
        self.progress["loss_curve"] = list(self.curve)

    def write(self) -> None:
        """Progress and log tail to the row; raises :class:`JobStopped` once cancelled."""
        self.last_write = time.monotonic()
        with session_scope(self.settings.database_url) as session:
            job = repo_training.get_training_job(session, self.job_id)
            if job is None:
                raise JobStopped("cancelled", "the job row was deleted")
            job.progress = dict(self.progress)
            job.log = "\n".join(self.lines)
            job.updated_at = _now()
            cancelled = job.cancel_requested
        if cancelled:
            raise JobStopped(
                "cancelled",
                f"cancelled while running (epoch {self.progress.get('epoch', 0)} of "
                f"{self.epochs}); nothing was registered and the active model is unchanged",
            )


def _now() -> Any:
    from app.db.types import utcnow

    return utcnow()


def run_training_job(settings: Settings, job_id: int) -> str:
    """Run the job to its end; returns its final status (or why nothing ran)."""
    with session_scope(settings.database_url) as session:
        job = repo_training.get_training_job(session, job_id)
        if job is None:
            logger.warning("training job %s does not exist; message dropped", job_id)
            return "missing"
        if job.status in JOB_FINISHED:
            return f"already {job.status}"
        resumed = job.status == "running"
        if resumed:
            if job.attempts >= MAX_ATTEMPTS:
                reason = (
                    f"its worker was lost {job.attempts} times (killed, out of memory?); not "
                    "resumed again. Nothing was registered and the active model is unchanged"
                )
                repo_training.finish_training_job(session, job, "failed", reason)
                return "failed"
            job.attempts += 1
        elif not repo_training.claim_training_job(session, job_id):
            session.refresh(job)
            if job.status == "queued":  # cancel requested, not yet marked
                repo_training.finish_training_job(
                    session, job, "cancelled", "cancelled before it started"
                )
            return f"not started ({job.status})"
        snapshot = _Snapshot(job)
        if snapshot.base_version_id is not None:
            base = repo.model_version(session, snapshot.base_version_id)
            snapshot.base_path = Path(base.checkpoint_path) if base else None
    reporter = Reporter(settings, job_id, snapshot.params)
    try:
        reporter.line("resumed after a worker restart" if resumed else "started")
        _run(settings, snapshot, reporter)
    except JobStopped as exc:
        return _finish(settings, job_id, exc.status, exc.reason, reporter)
    except Exception as exc:  # a crash: the job says why, the active model stays
        logger.exception("training job %s crashed", job_id)
        reason = (
            f"{type(exc).__name__}: {exc}; nothing was registered and the active model is unchanged"
        )
        return _finish(settings, job_id, "failed", reason, reporter)
    return "succeeded"


class _Snapshot:
    """What the job needs from its row, read once (the row keeps changing)."""

    def __init__(self, job: TrainingJob) -> None:
        self.id = job.id
        self.source = dict(job.source)
        self.params = dict(job.params)
        self.base_version_id = job.base_version_id
        self.base_path: Path | None = None


def _finish(settings: Settings, job_id: int, status: str, reason: str, reporter: Reporter) -> str:
    reporter.line(f"{status}: {reason}", write=False)
    with session_scope(settings.database_url) as session:
        job = repo_training.get_training_job(session, job_id)
        if job is not None and job.status not in JOB_FINISHED:
            job.progress = dict(reporter.progress)
            job.log = "\n".join(reporter.lines)
            repo_training.finish_training_job(session, job, status, reason)
    return status


def _data(settings: Settings, snapshot: _Snapshot, workdir: Path, reporter: Reporter) -> Path:
    """The folder to train on: the dataset (checked again, links included) or the reviews
    written out as one."""
    try:
        if snapshot.source["kind"] == "dataset":
            return resolve_dataset(settings.data_dir, snapshot.source["path"], walk=True)
        from app.retrain.dataset import write_reviews_dataset

        with session_scope(settings.database_url) as session:
            slices = reviewed_slices(session)
        if not slices:
            raise DataSourceError("source 'reviews': no reviewed series to train on")
        folder = workdir / "data"
        shutil.rmtree(folder, ignore_errors=True)
        counts = write_reviews_dataset(settings, slices, folder, seed=int(snapshot.params["seed"]))
        reporter.line(
            f"reviews: {counts['reviewed_slices']} slices ({counts['clean']} clean, "
            f"{counts['artifact']} artifact) + {counts['simulated']} simulated artifacts"
        )
        return folder
    except DataSourceError as exc:
        raise JobStopped("failed", f"data: {exc}; the active model is unchanged") from None


def _run(settings: Settings, snapshot: _Snapshot, reporter: Reporter) -> None:
    from training.fit.train import TrainConfig, train

    params = snapshot.params
    workdir = settings.training_dir / f"job-{snapshot.id}"
    workdir.mkdir(parents=True, exist_ok=True)
    data = _data(settings, snapshot, workdir, reporter)
    if snapshot.base_version_id is not None and (
        snapshot.base_path is None or not snapshot.base_path.is_file()
    ):
        raise JobStopped("failed", f"the base model version {snapshot.base_version_id} is gone")
    cfg = TrainConfig(
        data=data,
        out=workdir / "model.safetensors",
        arch=params["arch"],
        arch_config=dict(params["arch_config"]),
        epochs=int(params["epochs"]),
        samples_per_epoch=int(params["samples_per_epoch"]),
        batch_size=int(params["batch_size"]),
        lr=float(params["lr"]),
        # jobs queued before these settings existed get TrainConfig's defaults (the paper's)
        lr_schedule=str(params.get("lr_schedule", TrainConfig.lr_schedule)),
        keep=str(params.get("keep", TrainConfig.keep)),
        guided_crops=float(params.get("guided_crops", TrainConfig.guided_crops)),
        patch_floor=float(params.get("patch_floor", TrainConfig.patch_floor)),
        patch=int(params["patch"]),
        size=int(params["size"]),
        seed=int(params["seed"]),
        time_budget_s=params.get("time_budget_s"),
        num_workers=settings.training_loader_workers,
        resume=True,
        init_from=snapshot.base_path,
    )
    result = train(cfg, on_progress=reporter)
    reporter.line(f"training ended ({result.stopped}); best epoch {result.best_epoch + 1}")
    reporter.write()  # a cancel that came during the last epoch wins over registering
    if not cfg.out.is_file():
        raise JobStopped("failed", "training produced no checkpoint")
    _carry_fusion(snapshot, cfg.out, data, reporter)
    _register(settings, snapshot, cfg.out, data, reporter)


def _carry_fusion(snapshot: _Snapshot, trained: Path, data: Path, reporter: Reporter) -> None:
    """The base version's fused detector onto the trained checkpoint (carried over, or refitted
    where it reads AMAResNet), so the new version's verdicts are the detector's, not AMAResNet's
    alone; the log says which."""
    from training.fit.fusion import carry_fusion

    try:
        note = carry_fusion(snapshot.base_path, trained, data)
    except Exception as exc:  # the version is still registered: AMAResNet alone, and said so
        logger.exception("job %s: fused detector not carried over", snapshot.id)
        note = (
            f"the fused detector was not carried over ({exc}): the version serves AMAResNet alone"
        )
    reporter.line(note)


def _register(
    settings: Settings, snapshot: _Snapshot, trained: Path, data: Path, reporter: Reporter
) -> None:
    """Verify, compare on the fixed validation set, register, maybe activate, finish."""
    from app.model_versions import checkpoint_metadata
    from app.retrain import evaluation
    from app.retrain.registry import activate, register_trained

    try:
        evaluation.verify_loads(trained)
    except Exception as exc:
        raise JobStopped(
            "failed", f"the trained checkpoint does not load ({exc}); not registered"
        ) from None
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    final = settings.models_dir / f"job-{snapshot.id}.safetensors"
    shutil.copyfile(trained, final)
    valset = evaluation.fixed_validation_set(settings, data)
    candidate, cand_probs = evaluation.score(final, valset)
    with session_scope(settings.database_url) as session:
        active = repo.active_model_version(session)
        active_info = (active.id, active.name, Path(active.checkpoint_path)) if active else None
    baseline: dict[str, Any] | None = None
    curves = {f"candidate job-{snapshot.id}": (valset.labels, cand_probs)}
    if active_info is not None:
        try:
            active_metrics, active_probs = evaluation.score(active_info[2], valset)
            baseline = {"version_id": active_info[0], "name": active_info[1], **active_metrics}
            curves[f"active {active_info[1]}"] = (valset.labels, active_probs)
        except Exception as exc:  # the active checkpoint no longer loads: say so
            baseline = {"version_id": active_info[0], "name": active_info[1], "error": str(exc)}
    roc = evaluation.plot(curves, settings.models_dir / f"job-{snapshot.id}.roc.png")
    validation = {"set": valset.description, "candidate": candidate, "active": baseline}
    reporter.line(
        f"fixed validation set ({valset.description['slices']} slices): candidate F1 "
        f"{candidate['f1']:.3f}"
        + (f", active F1 {baseline['f1']:.3f}" if baseline and "f1" in baseline else ""),
        write=False,
    )
    meta = checkpoint_metadata(final)
    data_summary = {"source": snapshot.source, **(meta.get("training") or {}).get("data", {})}
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, snapshot.id, with_for_update=True)
        if job is None or job.status in JOB_FINISHED:
            return
        if job.cancel_requested:
            raise JobStopped(
                "cancelled", "cancelled before registration; the active model is unchanged"
            )
        version = register_trained(
            session,
            final,
            name=snapshot.params.get("name") or f"job-{snapshot.id}",
            parent_id=snapshot.base_version_id,
            data_summary=data_summary,
            validation=validation,
            roc_path=roc,
        )
        decision = _decide(session, snapshot, version.id, candidate, baseline, active_info)
        job.result_version_id = version.id
        job.activation = decision
        job.progress = dict(reporter.progress)
        reporter.line(
            f"registered model version {version.id} ({version.name}); {decision['reason']}",
            write=False,
        )
        job.log = "\n".join(reporter.lines)
        repo_training.finish_training_job(session, job, "succeeded")
        if decision["activated"]:
            activate(session, version, kind="auto", job_id=snapshot.id, details=decision)


def _decide(
    session: Any,
    snapshot: _Snapshot,
    version_id: int,
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    active_info: tuple[int, str, Path] | None,
) -> dict[str, Any]:
    """Whether to auto-activate, and why, with both numbers."""
    from app.retrain import evaluation

    requested = bool(snapshot.params.get("auto_activate"))
    out: dict[str, Any] = {
        "requested": requested,
        "activated": False,
        "candidate": {
            "version_id": version_id,
            "f1": candidate["f1"],
            "roc_auc": candidate["roc_auc"],
        },
        "active": {k: baseline.get(k) for k in ("version_id", "name", "f1", "roc_auc", "error")}
        if baseline
        else None,
    }
    current = repo.active_model_version(session)
    if not requested:
        out["reason"] = (
            "not activated: the job did not ask for auto_activate (activate it explicitly)"
        )
    elif active_info is None or current is None:
        out["activated"], out["reason"] = True, "activated: no version was active"
    elif current.id != active_info[0]:
        out["reason"] = (
            f"not activated: the active version changed to {current.id} during the comparison"
        )
    elif baseline is not None and "error" in baseline:
        out["activated"] = True
        out["reason"] = (
            f"activated: the active version's checkpoint does not load ({baseline['error']})"
        )
    elif baseline is not None and evaluation.beats(candidate, baseline):
        out["activated"] = True
        out["reason"] = (
            f"activated: F1 {candidate['f1']:.3f} / ROC-AUC {candidate['roc_auc'] or 0:.3f} beats "
            f"the active version's {baseline['f1']:.3f} / {baseline['roc_auc'] or 0:.3f}"
        )
    else:
        assert baseline is not None
        out["reason"] = (
            f"not activated: F1 {candidate['f1']:.3f} / ROC-AUC {candidate['roc_auc'] or 0:.3f} "
            f"does not beat the active version's {baseline['f1']:.3f} / "
            f"{baseline['roc_auc'] or 0:.3f}"
        )
    return out
