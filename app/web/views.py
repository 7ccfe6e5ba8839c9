"""What the viewer shows: the series' data and its reviews, from database rows (the worklist's
rows: ``worklist_view.py``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from app.api.schemas import label_name, review_decision
from app.api.schemas_context import series_context
from app.db import repo, reviews
from app.db.models import Review, Series, Study
from app.web.quality import quality_rows
from model.acquisition import ACQUISITION_LABELS

from .verdict_words import explain, slice_name, threshold_for


def review_state(review: Review | None) -> dict[str, Any]:
    if review is None:
        return {"state": "unreviewed", "text": "unreviewed", "reviewer": None, "at": None}
    decision = review_decision(review.label, review.model_label)
    return {
        "state": decision,
        "text": f"{decision} ({label_name(review.label)})",
        "summary": review_summary(review),
        "reviewer": review.reviewer,
        "at": review.created_at.isoformat(timespec="seconds"),
    }


def review_summary(review: Review) -> str:
    """``Reviewed: clean — overrides the model (artifact)``: the reader's label first."""
    label, model = label_name(review.label), label_name(review.model_label)
    if model is None:
        return f"Reviewed: {label} (there was no model verdict)"
    relation = "confirms" if label == model else "overrides"
    return f"Reviewed: {label} — {relation} the model ({model})"


def context_view(
    series: Series, study: Study | None, *, role: str, hide_names: bool
) -> dict[str, Any] | None:
    """The patient and study context as the pages show it (None for a role that may not see
    it): the API's fields, plus ``scanner_detail`` (make, model and station),
    ``acquired_text`` (the scanner's local time, as the header gives it) and
    ``acquisition_text`` (the series' acquisition family in words; None when unknown)."""
    context = series_context(series, study, role=role, hide_names=hide_names)
    if context is None:
        return None
    make = " ".join(p for p in (context.manufacturer, context.manufacturer_model) if p)
    station = f"station {context.station_name}" if context.station_name else ""
    return {
        **context.model_dump(),
        "scanner_detail": " · ".join(p for p in (make, station) if p),
        "acquired_text": context.acquired_at.replace("T", " ") if context.acquired_at else None,
        "acquisition_text": ACQUISITION_LABELS.get(series.acquisition or ""),
    }


def review_view(review: Review) -> dict[str, Any]:
    """One review as the viewer shows it: the newest one fills the form on reload."""
    return {
        "id": review.id,
        "label": label_name(review.label),
        "model_label": label_name(review.model_label),
        **review_state(review),
        "comment": review.comment,
        "slices": {str(s.instance_id): label_name(s.label) for s in review.slices},
        "slice_sources": {str(s.instance_id): s.source for s in review.slices},
        "model_slices_confirmed": review.model_slices_confirmed,
    }


def series_data(
    session: Session, series_id: int, request: Request, *, role: str, hide_names: bool
) -> dict[str, Any] | None:
    """Everything the viewer draws, as JSON-able values (None when the series is unknown);
    ``context`` is the patient and study context for a ``role`` that may see it."""
    series = repo.get_series(session, series_id)
    if series is None:
        return None
    verdict = repo.series_verdict(session, series.id)
    instances = repo.series_instances(session, series.id)
    ids = [i.id for i in instances]
    by_instance = (
        repo.instance_verdicts(session, ids, verdict.model_version_id)
        if verdict
        else repo.latest_instance_verdicts(session, ids)
    )
    version = repo.model_version(session, verdict.model_version_id) if verdict else None
    history = reviews.series_reviews(session, series.id)
    slices = [
        {
            "id": inst.id,
            "number": inst.instance_number,
            "name": slice_name(inst.instance_number, position),
            "rows": inst.rows,
            "cols": inst.cols,
            "probability": by_instance[inst.id].probability if inst.id in by_instance else None,
            "label": label_name(by_instance[inst.id].label) if inst.id in by_instance else None,
            "patch_map": by_instance[inst.id].patch_map if inst.id in by_instance else None,
            "cnn_probability": (
                by_instance[inst.id].cnn_probability if inst.id in by_instance else None
            ),
            "quality": (
                quality_rows(
                    by_instance[inst.id].iqms,
                    by_instance[inst.id].cnn_probability,
                    by_instance[inst.id].patch_map,
                    version.checkpoint_path if version else None,
                    spectral_probability=by_instance[inst.id].spectral_probability,
                )
                if inst.id in by_instance
                else []
            ),
            "image_url": request.url_for("instance_image", instance_id=inst.id).path,
            "pixels_url": request.url_for("instance_pixels", instance_id=inst.id).path,
        }
        for position, inst in enumerate(instances)
    ]
    verdict_view = (
        {
            "label": label_name(verdict.label),
            "probability": verdict.probability,
            "threshold": verdict.threshold,
            "threshold_for": threshold_for(verdict, series.acquisition),
            "rule": verdict.rule,
            "flagged": list(verdict.flagged),
        }
        if verdict
        else None
    )
    return {
        "id": series.id,
        "status": series.status,
        "error": series.error,
        "scanner": series.scanner,
        "protocol": series.protocol,
        "received_at": series.received_at.strftime("%Y-%m-%d %H:%M:%S"),
        "context": context_view(
            series,
            session.get(Study, series.study_id) if series.study_id is not None else None,
            role=role,
            hide_names=hide_names,
        ),
        "verdict": verdict_view,
        "words": explain(verdict_view, slices),
        "model_version": {"name": version.name, "arch": version.arch} if version else None,
        "slices": slices,
        #: newest first: ``reviews[0]`` is the series' label and fills the review form
        "reviews": [review_view(r) for r in history],
        "review_url": f"/api/v1/series/{series.id}/reviews",
    }
