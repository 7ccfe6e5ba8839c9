"""``GET /api/v1/series/{id}/sr``: the series verdict as a DICOM Structured Report.

The same report the worker C-STOREs to the PACS destinations (``app.pacs``): built from the
database on each request, with the same UIDs for the same verdict. Read access as for
``GET /api/v1/series/{id}`` (a scanner key: its own series).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app.api.deps import ReadableSeries, SessionDep, SettingsDep
from app.pacs.report import NoReport, load_report
from app.pacs.sr import build_sr, to_bytes

router = APIRouter(prefix="/series", tags=["series"])
DICOM = {"content": {"application/dicom": {}}, "description": "a DICOM Part 10 file"}


@router.get(
    "/{series_id}/sr",
    name="series_sr",
    response_class=Response,
    responses={200: DICOM, 404: {"description": "no such series, no verdict yet, or not DICOM"}},
)
def series_sr(series: ReadableSeries, session: SessionDep, settings: SettingsDep) -> Response:
    """The Comprehensive SR of the series' verdict (``application/dicom``): verdict,
    probability, flagged slices by SOP Instance UID, model version, and each slice's
    probability and image-quality metrics. 404 until the verdict is written, and for a series
    whose slices are not DICOM (a report belongs to the patient and study of its images)."""
    try:
        report = load_report(session, settings, series.id)
    except NoReport as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(
        to_bytes(build_sr(report)),
        media_type="application/dicom",
        headers={"Content-Disposition": f'attachment; filename="series-{series.id}-sr.dcm"'},
    )
