"""The inference service behind ``analyse_series``: slices in the database -> verdict rows.

The active ModelVersion's checkpoint is loaded into a :class:`model.Predictor` once per process
and reloaded when another version becomes active. All unscored slices of a series go through
the predictor in one call; writes are idempotent (existing verdicts are kept, the unique
constraints back that up), so a redelivered job writes nothing twice.

Shadow mode: once the active version's verdicts are committed, the version in shadow (if one
is) scores the same slices with its own cached Predictor and writes *shadow* rows, which no
user-facing read returns, at its own threshold for the series' acquisition family
(:func:`app.db.thresholds.model_threshold`: the site's rows were set for the active version).
Whatever goes wrong there is logged and changes nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app import storage
from app.config import SeriesRule, Settings
from app.db import heartbeats, repo, thresholds
from app.db.models import Instance, InstanceVerdict, ModelVersion
from app.db.session import session_scope

logger = logging.getLogger(__name__)

#: {"key": (version id, SHA-256), "predictor": model.Predictor}: the active version's, the
#: shadow's
_loaded: dict[str, Any] = {}
_shadow_loaded: dict[str, Any] = {}


class BadSeriesData(Exception):
    """Data that will never analyse (missing or corrupt stored file, unusable checkpoint)."""


def predictor_for(
    version: ModelVersion, cache: dict[str, Any] = _loaded, *, settings: Settings | None = None
) -> Any:
    """The process's Predictor for ``version`` (loaded on first use or version change);
    ``cache`` is the slot it lives in (the active version's, or the shadow's). ``settings``
    choose the inference backend and precision (default ``auto`` both) and whether the fused
    detector's IQM panel runs beside the network (default yes); ONNX exports (and the int8 one
    of ``amaqc quantize``) are cached next to the checkpoint, so every worker of a host and
    every restart share one."""
    backend = settings.inference_backend if settings is not None else "auto"
    precision = settings.inference_precision if settings is not None else "auto"
    overlap = settings.inference_overlap_panel if settings is not None else True
    key = (version.id, version.sha256, backend, precision, overlap)
    if cache.get("key") != key:
        from model import CheckpointError, Predictor
        from model.backends import BackendUnavailable

        try:
            predictor = Predictor(
                version.checkpoint_path,
                backend=backend,
                precision=precision,
                overlap_panel=overlap,
            )
        except (CheckpointError, FileNotFoundError, BackendUnavailable) as exc:
            raise BadSeriesData(f"model version {version.name}: {exc}") from None
        cache.update(key=key, predictor=predictor)
        logger.info(
            "loaded model version %s (%s) on %s with %s (%s); spectral network: %s",
            version.id,
            version.arch,
            predictor.device,
            predictor.backend,
            predictor.precision,
            predictor.spectral_backend or "not read",
        )
    return cache["predictor"]


def ran_on(predictor: Any) -> str:
    """What ran a :class:`model.Predictor`'s network, as a verdict records it: its backend (with
    the precision in the name where not float32) and the device, e.g. ``onnxruntime-int8
    (cpu)``."""
    return f"{predictor.backend} ({predictor.device.type})"[:40]


def load_pixels(settings: Settings, instances: Sequence[Instance]) -> list[np.ndarray]:
    """(H, W) float32 pixels of each instance, read back from the store."""
    from training.data import UnreadableImage, read_slices

    by_file: dict[str, list[Any]] = {}
    out = []
    for inst in instances:
        try:
            if inst.storage_path not in by_file:
                path = storage.resolve(settings.storage_dir, inst.storage_path)
                by_file[inst.storage_path] = read_slices(path, meta=False)  # pixels alone
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


def analyse(
    settings: Settings, series_id: int, on_verdict: Callable[[], None] | None = None
) -> str:
    """Score the series' unscored slices; write its verdict when the series is complete.

    The series verdict is recomputed from the slice verdicts of every instance the series has
    now, so a slice that arrives after a verdict updates it; a redelivered job that finds
    nothing new writes nothing. ``on_verdict`` runs once a new series verdict is committed
    (the task sends the webhook there), before the version in shadow mode, if any, scores the
    series. Returns a short outcome (``done``, ``scored``, ``already done``, ``failed``,
    ``missing``).
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
        applied = thresholds.applicable(session, series, version)
        instances = repo.series_instances(session, series_id)
        scored = repo.instance_verdicts(session, [i.id for i in instances], version.id)
        todo = [i for i in instances if i.id not in scored]
        if series.complete and todo:
            repo.mark_processing(session, series, worker=heartbeats.process_name())
    if todo:
        try:
            predictor = predictor_for(version, settings=settings)
            pixels = load_pixels(settings, todo)
        except BadSeriesData as exc:
            return _fail(settings, series_id, str(exc))
        start = time.perf_counter()
        predictions = predictor.predict(pixels)
        elapsed = time.perf_counter() - start
        logger.info("series %s: %d slices in %.3f s", series_id, len(todo), elapsed)
    # the slice verdicts and the series verdict in one transaction: one commit, and never the
    # one without the other
    with session_scope(settings.database_url) as session:
        if todo:
            _add_instance_verdicts(
                session, version, todo, predictions, applied=applied, inference=ran_on(predictor)
            )
        series = repo.get_series(session, series_id)
        if series is None or not series.complete:
            return "scored"
        # the threshold rows as they are now (one may have changed since the slices were scored)
        applied = thresholds.applicable(session, series, version)
        instances = repo.series_instances(session, series_id)
        verdicts = repo.instance_verdicts(session, [i.id for i in instances], version.id)
        values = series_verdict_values(
            {i: v.probability for i, v in verdicts.items()}, applied.value, settings.rule
        )
        values.update(applied.columns())
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
    outcome = "already done" if unchanged and not todo else "done"
    if outcome == "done" and on_verdict is not None:
        on_verdict()
    shadow(settings, series_id)
    return outcome


def shadow(settings: Settings, series_id: int) -> str:
    """Score the series with the version in shadow mode (if any) and write shadow rows.

    Called after the active version's verdict is committed; never raises: a failure (a
    checkpoint that does not load, an unreadable file) is logged and the series, its verdict
    and its webhook event stay as they are. Returns a short outcome for logs and tests.
    """
    try:
        return _shadow(settings, series_id)
    except BadSeriesData as exc:
        logger.warning(
            "series %s: no shadow verdict (the verdict is unaffected): %s", series_id, exc
        )
        return "shadow failed"
    except Exception:
        logger.exception("series %s: shadow scoring failed (the verdict is unaffected)", series_id)
        return "shadow failed"


def _shadow(settings: Settings, series_id: int) -> str:
    with session_scope(settings.database_url) as session:
        version = repo.shadow_model_version(session)
        series = repo.get_series(session, series_id)
        if version is None or series is None:
            return "no shadow"
        applied = thresholds.model_threshold(series, version)
        instances = repo.series_instances(session, series_id)
        scored = repo.instance_verdicts(session, [i.id for i in instances], version.id, shadow=True)
        todo = [i for i in instances if i.id not in scored]
    if todo:
        predictor = predictor_for(version, _shadow_loaded, settings=settings)
        predictions = predictor.predict(load_pixels(settings, todo))
        _write_instance_verdicts(
            settings,
            version,
            todo,
            predictions,
            shadow=True,
            inference=ran_on(predictor),
            applied=applied,
        )
    with session_scope(settings.database_url) as session:
        series = repo.get_series(session, series_id)
        if series is None or not series.complete:
            return "shadow scored"
        instances = repo.series_instances(session, series_id)
        verdicts = repo.instance_verdicts(
            session, [i.id for i in instances], version.id, shadow=True
        )
        values = series_verdict_values(
            {i: v.probability for i, v in verdicts.items()}, applied.value, settings.rule
        )
        values.update(applied.columns())
        repo.put_series_verdict(
            session,
            {"series_id": series_id, "model_version_id": version.id, "shadow": True, **values},
        )
    return "shadow done"


def _write_instance_verdicts(
    settings: Settings,
    version: ModelVersion,
    todo: Sequence[Instance],
    predictions: Any,
    *,
    inference: str,
    shadow: bool = False,
    applied: thresholds.Applied | None = None,
) -> None:
    """Write the slice verdicts in a transaction of their own (see
    :func:`_add_instance_verdicts`)."""
    with session_scope(settings.database_url) as session:
        _add_instance_verdicts(
            session,
            version,
            todo,
            predictions,
            inference=inference,
            shadow=shadow,
            applied=applied,
        )


def _add_instance_verdicts(
    session: Session,
    version: ModelVersion,
    todo: Sequence[Instance],
    predictions: Any,
    *,
    inference: str,
    shadow: bool = False,
    applied: thresholds.Applied | None = None,
) -> None:
    """Add the slice verdicts to ``session`` (one flush; those a concurrent delivery of the
    same job wrote already are left out); ``applied``: the series' threshold (default: the
    version's); ``inference``: what ran the network (:func:`ran_on`)."""
    threshold = applied.value if applied is not None else version.threshold
    existing = repo.instance_verdicts(session, [i.id for i in todo], version.id, shadow=shadow)
    repo.add_instance_verdicts(
        session,
        [
            InstanceVerdict(
                instance_id=inst.id,
                model_version_id=version.id,
                probability=pred.probability,
                label=int(pred.probability >= threshold),
                threshold=threshold,
                threshold_source=applied.source if applied is not None else None,
                inference=inference,
                patch_map=np.round(pred.patch_probs.astype(float), 4).tolist(),
                cnn_probability=pred.cnn_probability,
                spectral_probability=pred.spectral_probability,
                iqms=(
                    {k: round(float(v), 6) for k, v in pred.iqms.items()}
                    if pred.iqms is not None
                    else None
                ),
                shadow=shadow,
            )
            for inst, pred in zip(todo, predictions, strict=True)
            if inst.id not in existing  # written by a concurrent delivery of the same job
        ],
    )
