"""Reviews of series verdicts (radiographer or admin keys) and their export as training labels:
``POST/GET /api/v1/series/{id}/reviews``, ``GET /api/v1/reviews/export?format=csv|zip``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse

from app import reviews_export
from app.api.deps import ReadableSeries, ReviewerKey, SessionDep, SettingsDep
from app.api.schemas import ReviewCreate, ReviewPublic, ReviewsPublic, review_public
from app.db import repo, reviews

router = APIRouter(tags=["reviews"])
LABELS = {"clean": 0, "artifact": 1}


@router.post(
    "/series/{series_id}/reviews",
    response_model=ReviewPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_review(
    body: ReviewCreate, series: ReadableSeries, key: ReviewerKey, session: SessionDep
) -> ReviewPublic:
    """Confirm or override a series verdict, optionally labelling single slices.

    A clean series has no artifact slice; the newest review of a series is its label.
    """
    verdict = repo.series_verdict(session, series.id)
    if verdict is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"series {series.id} has no verdict yet (status {series.status}); "
            "review it once it is done",
        )
    own = {i.id for i in repo.series_instances(session, series.id)}
    foreign = sorted(set(body.slices) - own)
    if foreign:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"slices: instance(s) {', '.join(map(str, foreign))} are not in series {series.id}",
        )
    if body.label == "clean" and "artifact" in body.slices.values():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "a series labelled clean cannot have a slice labelled artifact",
        )
    every_slice_clean = own and set(body.slices) == own and "artifact" not in body.slices.values()
    if body.label == "artifact" and every_slice_clean:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "a series labelled artifact needs at least one artifact slice "
            "(every slice is labelled clean)",
        )
    _check_model_slices(session, body, verdict.model_version_id)
    review = reviews.add_review(
        session,
        series,
        key,
        label=LABELS[body.label],
        slices={i: LABELS[v] for i, v in body.slices.items()},
        sources={i: body.slice_sources.get(i, "reader") for i in body.slices},
        model_slices_confirmed=body.model_slices_confirmed,
        comment=body.comment.strip(),
        verdict=verdict,
    )
    session.commit()
    return review_public(review)


def _check_model_slices(session: SessionDep, body: ReviewCreate, version_id: int) -> None:
    """422 unless every slice marked as accepted from the model is labelled as the model
    called it (a reader's own call is ``reader``)."""
    unlabelled = sorted(set(body.slice_sources) - set(body.slices))
    if unlabelled:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"slice_sources: instance(s) {', '.join(map(str, unlabelled))} have no slice label",
        )
    accepted = [i for i, source in body.slice_sources.items() if source == "model"]
    calls = repo.instance_verdicts(session, accepted, version_id)
    differ = sorted(
        i for i in accepted if i not in calls or LABELS[body.slices[i]] != calls[i].label
    )
    if differ:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"slice_sources: instance(s) {', '.join(map(str, differ))} are marked as accepted "
            "from the model but the model called them otherwise (or not at all); "
            "mark them as set by the reader",
        )


@router.get("/series/{series_id}/reviews", response_model=ReviewsPublic)
def list_reviews(series: ReadableSeries, _: ReviewerKey, session: SessionDep) -> ReviewsPublic:
    """Every review of a series, newest first (the first one is its label)."""
    return ReviewsPublic(
        items=[review_public(r) for r in reviews.series_reviews(session, series.id)]
    )


@router.get(
    "/reviews/export",
    responses={200: {"content": {"text/csv": {}, "application/zip": {}}}},
)
def export_reviews(
    _: ReviewerKey,
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[
        Literal["csv", "zip"],
        Query(description="csv: labels.csv alone; zip: labels.csv and the images it names"),
    ] = "csv",
) -> Response:
    """Reviewed slices as a labels sheet for ``amaqc train`` (one row per labelled slice)."""
    items = reviews.export_slices(session)
    if format == "csv":
        return Response(
            reviews_export.labels_csv(items),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )
    try:
        archive = reviews_export.labels_zip(settings, items)
    except (OSError, ValueError, IndexError) as exc:
        raise HTTPException(
            status.HTTP_410_GONE, f"a reviewed slice's stored image is unusable: {exc}"
        ) from None

    def chunks() -> Iterator[bytes]:
        with archive:
            yield from iter(lambda: archive.read(1 << 20), b"")

    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="labels.zip"'},
    )
