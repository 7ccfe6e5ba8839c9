"""The admin page of per-scanner / per-protocol thresholds (``/admin/thresholds``): the rows,
the active model version's own thresholds (per acquisition family where it has them), a form
that sets one and a remove button per row.

Plain form posts carrying the page's CSRF token, through the same ``app.db.thresholds``
functions as ``/api/v1/thresholds``; a refused value shows the page again with the reason.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.api.deps import SessionDep
from app.db import repo, thresholds
from app.db.models import ModelVersion
from model.acquisition import ACQUISITIONS

from .deps import AdminDep, WebForbidden, WebUser, render
from .verdict_words import FAMILY_WORDS

router = APIRouter(prefix="/thresholds", include_in_schema=False)


def _csrf_ok(user: AdminDep, csrf: Annotated[str, Form()] = "") -> WebUser:
    if not hmac.compare_digest(csrf, user.csrf):
        raise WebForbidden("missing or wrong CSRF token; reload the page and try again")
    return user


CheckedAdmin = Annotated[WebUser, Depends(_csrf_ok)]


def _rows(session: Session) -> list[dict[str, Any]]:
    out = []
    for row in thresholds.list_thresholds(session):
        details = row.details or {}
        metrics = details.get("metrics") or {}
        chosen_on = (
            f"{details.get('clean', 0)} clean + {details.get('artifact', 0)} artifact reviewed "
            f"slices, F1 {metrics.get('f1', 0):.2f}, {details.get('model_version', '')}"
            if row.origin == "calibrate"
            else ""
        )
        level = (
            "scanner+protocol"
            if row.scanner and row.protocol
            else ("protocol" if row.protocol else "scanner")
        )
        out.append(
            {
                "id": row.id,
                "scanner": row.scanner,
                "protocol": row.protocol,
                "level": level,
                "value": f"{row.value:.4g}",
                "origin": row.origin,
                "chosen_on": chosen_on,
                "set_by": row.set_by,
                "updated": f"{row.updated_at:%Y-%m-%d %H:%M}",
            }
        )
    return out


def _families(version: ModelVersion | None) -> list[dict[str, str]]:
    """The model version's threshold per acquisition family, as the page names them: ``for
    echo-planar series`` and the value, in the order of ``model.acquisition.ACQUISITIONS``."""
    found = (version.acquisition_thresholds or {}) if version is not None else {}
    return [
        {
            "name": name,
            "words": f"for {FAMILY_WORDS[name]} series",
            "value": f"{float(found[name]):.4g}",
        }
        for name in ACQUISITIONS
        if name in found
    ]


def _page(
    request: Request,
    user: WebUser,
    session: Session,
    code: int = 200,
    error: str = "",
    values: dict[str, str] | None = None,
) -> Response:
    version = repo.active_model_version(session)
    return render(
        request,
        "admin_thresholds.html",
        user,
        code,
        rows=_rows(session),
        version=version,
        families=_families(version),
        error=error,
        values=values or {},
    )


@router.get("", response_class=HTMLResponse)
def thresholds_page(request: Request, user: AdminDep, session: SessionDep) -> Response:
    """Every threshold row and the model version's own threshold; the form to set one."""
    return _page(request, user, session)


@router.post("", response_class=HTMLResponse)
def set_threshold(
    request: Request,
    user: CheckedAdmin,
    session: SessionDep,
    value: Annotated[str, Form()] = "",
    scanner: Annotated[str, Form()] = "",
    protocol: Annotated[str, Form()] = "",
) -> Response:
    """Set (or replace) a row; a bad value shows the page again with the reason (422)."""
    values = {"scanner": scanner, "protocol": protocol, "value": value}
    try:
        number = float(value)
        thresholds.set_threshold(
            session,
            scanner=scanner,
            protocol=protocol,
            value=number,
            origin="admin",
            set_by=user.key.name,
        )
    except ValueError as exc:
        session.rollback()
        reason = str(exc) if value.strip() else "give the threshold, a number in [0, 1]"
        if reason.startswith("could not convert"):
            reason = f"the threshold must be a number in [0, 1], got {value!r}"
        return _page(request, user, session, 422, reason, values)
    session.commit()
    return RedirectResponse("/admin/thresholds", status.HTTP_303_SEE_OTHER)


@router.post("/{threshold_id}/remove", response_class=HTMLResponse)
def remove_threshold(threshold_id: int, user: CheckedAdmin, session: SessionDep) -> Response:
    """Remove a row (gone already: nothing to do)."""
    thresholds.remove_threshold(session, threshold_id)
    session.commit()
    return RedirectResponse("/admin/thresholds", status.HTTP_303_SEE_OTHER)
