"""Per-scanner / per-protocol decision thresholds (admin keys only): list, set, remove.

The worker applies the most specific row that matches a series (scanner + protocol >
protocol > scanner > the model version's threshold for the series' acquisition family > the
model version's own threshold) to the series it scores next.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import AdminKey, SessionDep, require_role
from app.api.schemas_thresholds import (
    ThresholdCreate,
    ThresholdPublic,
    ThresholdsPublic,
    threshold_public,
)
from app.db import repo, thresholds

router = APIRouter(prefix="/thresholds", tags=["thresholds"], dependencies=[require_role("admin")])


@router.get("", response_model=ThresholdsPublic)
def list_thresholds(session: SessionDep) -> ThresholdsPublic:
    """Every threshold row, and the active model version's own thresholds: for any series and
    per acquisition family."""
    version = repo.active_model_version(session)
    by_family = (version.acquisition_thresholds or {}) if version else {}
    return ThresholdsPublic(
        items=[threshold_public(t) for t in thresholds.list_thresholds(session)],
        model_threshold=version.threshold if version else None,
        model_acquisition_thresholds=by_family,  # type: ignore[arg-type]
    )


@router.put("", response_model=ThresholdPublic)
def set_threshold(body: ThresholdCreate, key: AdminKey, session: SessionDep) -> ThresholdPublic:
    """Set the threshold of a scanner, a protocol, or both (names normalised: case, '_' and
    '-' ignored); 422 when neither is named."""
    try:
        row = thresholds.set_threshold(
            session,
            scanner=body.scanner,
            protocol=body.protocol,
            value=body.value,
            origin="admin",
            set_by=key.name,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    session.commit()
    return threshold_public(row)


@router.delete("/{threshold_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_threshold(threshold_id: int, session: SessionDep) -> None:
    """Remove a row: its series fall back to the next matching row or the model's own."""
    if not thresholds.remove_threshold(session, threshold_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"threshold {threshold_id} not found")
    session.commit()
