"""The inference service behind ``analyse_series``: slices in the database -> verdict rows.

The active ModelVersion's checkpoint is loaded into a :class:`model.Predictor` once per process
and reloaded when another version becomes active. All unscored slices of a series go through
the predictor in one call; writes are idempotent (existing verdicts are kept, the unique
constraints back that up), so a redelivered job writes nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from app import storage
from app.config import SeriesRule, Settings
from app.db import repo
from app.db.models import Instance, InstanceVerdict, ModelVersion
from app.db.session import session_scope

logger = logging.getLogger(__name__)

_loaded: dict[str, Any] = {}  # {"version_id": int, "predictor": model.Predictor}


class BadSeriesData(Exception):
    """Data that will never analyse (missing or corrupt stored file, unusable checkpoint)."""


def predictor_for(version: ModelVersion) -> Any:
    """The process's Predictor for ``version`` (loaded on first use or version change)."""
    if _loaded.get("version_id") != version.id:
        from model import CheckpointError, Predictor

        try:
            predictor = Predictor(version.checkpoint_path)
        except (CheckpointError, FileNotFoundError) as exc:
            raise BadSeriesData(f"model version {version.name}: {exc}") from None
        _loaded.update(version_id=version.id, predictor=predictor)
        logger.info(
            "loaded model version %s (%s) on %s", version.id, version.arch, predictor.device
        )
    return _loaded["predictor"]


def load_pixels(settings: Settings, instances: Sequence[Instance]) -> list[np.ndarray]:
    """(H, W) float32 pixels of each instance, read back from the store."""
    from training.image_types import UnreadableImage
    from training.readers import read_slices

    by_file: dict[str, list[Any]] = {}
    out = []
    for inst in instances:
        try:
            if inst.storage_path not in by_file:
                path = storage.resolve(settings.storage_dir, inst.storage_path)
                by_file[inst.storage_path] = read_slices(path)
            out.append(by_file[inst.storage_path][inst.frame_index].pixels)
        except (UnreadableImage, IndexError, ValueError) as exc:
            raise BadSeriesData(f"instance {inst.id}: stored file unusable ({exc})") from None
    return out


def series_verdict_values(
    probabilities: dict[int, float], threshold: float, rule: SeriesRule
) -> dict[str, Any]:
    """Series probability, label and flagged instances from slice probabilities by instance id.

    The series probability is the m-th highest slice probability, m = the number of flagged
    slices the rule needs, so ``label == (probability >= threshold)`` for every rule.
    """
    ranked = sorted(probabilities.values(), reverse=True)
    need = rule.min_flagged(len(ranked))
    flagged = sorted(i for i, p in probabilities.items() if p >= threshold)
    probability = ranked[need - 1] if len(ranked) >= need else 0.0
    return {
        "probability": float(probability),
        "label": int(len(flagged) >= need),
        "flagged_count": len(flagged),
        "flagged": flagged,
        "rule": str(rule),
        "threshold": float(threshold),
    }


def _fail(settings: Settings, series_id: int, reason: str) -> str:
    logger.warning("series %s failed: %s", series_id, reason)
    with session_scope(settings.database_url) as session:
        series = repo.get_series(session, series_id)
        if series is not None:
            repo.mark_finished(session, series, "failed", reason)
    return "failed"


def analyse(settings: Settings, series_id: int) -> str:
    """Score the series' unscored slices; write its verdict when the series is complete.

    The series verdict is recomputed from the slice verdicts of every instance the series has
    now, so a slice that arrives after a verdict updates it; a redelivered job that finds
    nothing new writes nothing. Returns a short outcome (``done``, ``scored``,
    ``already done``, ``failed``, ``missing``).
    """
    with session_scope(settings.database_url) as session:
        series = repo.get_series(session, series_id)
        if series is None:
            logger.warning("series %s does not exist; job dropped", series_id)
            return "missing"
        version = repo.active_model_version(session)
        if version is None:
            reason = "no active model version (register one: amaqc up does it on first start)"
            repo.mark_finished(session, series, "failed", reason)
            return "failed"
        instances = repo.series_instances(session, series_id)
        scored = repo.instance_verdicts(session, [i.id for i in instances], version.id)
        todo = [i for i in instances if i.id not in scored]
        if series.complete and todo:
            repo.mark_processing(session, series)
    if todo:
        try:
            predictor = predictor_for(version)
            pixels = load_pixels(settings, todo)
        except BadSeriesData as exc:
            return _fail(settings, series_id, str(exc))
        start = time.perf_counter()
        predictions = predictor.predict(pixels)
        elapsed = time.perf_counter() - start
        logger.info("series %s: %d slices in %.3f s", series_id, len(todo), elapsed)
        _write_instance_verdicts(settings, version, todo, predictions)
    with session_scope(settings.database_url) as session:
        series = repo.get_series(session, series_id)
        if series is None or not series.complete:
            return "scored"
        instances = repo.series_instances(session, series_id)
        verdicts = repo.instance_verdicts(session, [i.id for i in instances], version.id)
        values = series_verdict_values(
            {i: v.probability for i, v in verdicts.items()}, version.threshold, settings.rule
        )
        current = repo.series_verdict(session, series_id, version.id)
        unchanged = current is not None and all(
            getattr(current, name) == value for name, value in values.items()
        )
        if not unchanged:
            repo.put_series_verdict(
                session, {"series_id": series_id, "model_version_id": version.id, **values}
            )
        if series.status != "done" or not unchanged:
            repo.mark_finished(session, series, "done", None)
    return "already done" if unchanged and not todo else "done"


def _write_instance_verdicts(
    settings: Settings, version: ModelVersion, todo: Sequence[Instance], predictions: Any
) -> None:
    with session_scope(settings.database_url) as session:
        existing = repo.instance_verdicts(session, [i.id for i in todo], version.id)
        for inst, pred in zip(todo, predictions, strict=True):
            if inst.id in existing:
                continue  # written by a concurrent delivery of the same job
            repo.add_instance_verdict(
                session,
                InstanceVerdict(
                    instance_id=inst.id,
                    model_version_id=version.id,
                    probability=pred.probability,
                    label=int(pred.probability >= version.threshold),
                    threshold=version.threshold,
                    patch_map=np.round(pred.patch_probs.astype(float), 4).tolist(),
                ),
            )
