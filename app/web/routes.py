"""The radiographer web UI's pages: sign-in, worklist, series viewer (admin pages: ``admin.py``).

Server-rendered with Jinja2; ``static/`` holds the small scripts. Sign-in takes a radiographer
or admin key and keeps a session cookie naming a server-side session (``session.py``); scanner
keys cannot sign in.
URLs carry series ids and filters, never patient data.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import UI_ROLES, SessionDep, SettingsDep, signed_in
from app.db import repo, reviews

from . import session as web_session
from .deps import UserDep, WebNotFound, render
from .views import series_data
from .worklist_view import (
    kept_params,
    page_url,
    parse_filters,
    parse_order,
    parse_page,
    row_view,
    sort_headers,
)

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def _insecure_transport(request: Request, cookie_secure: bool) -> bool:
    """True when a Secure cookie will not be kept: plain HTTP to a host other than loopback."""
    host = request.url.hostname or ""
    local = host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
    return cookie_secure and request.url.scheme == "http" and not local


@router.get("/login", response_class=HTMLResponse)
def loginrender(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if signed_in(request, session, settings) is not None:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    insecure = _insecure_transport(request, settings.cookie_secure)
    return render(request, "login.html", None, insecure=insecure)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str, Form()] = "",
) -> Response:
    """Sign in with a radiographer or admin key (401 unknown key, 403 scanner key)."""
    key = repo.find_api_key(session, api_key.strip()) if api_key.strip() else None
    if key is None:
        error = "enter an API key" if not api_key.strip() else "unknown or revoked API key"
        return render(request, "login.html", None, status.HTTP_401_UNAUTHORIZED, error=error)
    if key.role not in UI_ROLES:
        error = (
            f"a {key.role} key cannot sign in to the UI; sign in with a radiographer or "
            "admin key (amaqc keys create --role radiographer --name ...)"
        )
        return render(request, "login.html", None, status.HTTP_403_FORBIDDEN, error=error)
    token = web_session.start(session, settings, key)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    web_session.set_cookie(response, settings, token)
    return response


@router.post("/logout")
def logout(
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Sign out: the session's row is deleted, so the cookie is refused wherever it was kept."""
    if not hmac.compare_digest(csrf, user.csrf):
        return Response("missing or wrong CSRF token; reload the page", status.HTTP_403_FORBIDDEN)
    web_session.end(session, request.cookies.get(web_session.COOKIE))
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    web_session.clear_cookie(response, settings)
    return response


@router.get("/", response_class=HTMLResponse)
def worklistrender(
    request: Request, user: UserDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Newest series first (or sorted by a column); filters, sort and page in the query
    string; a series is red when its label (the review's, else the model's) is artifact."""
    params = dict(request.query_params)
    filters, problems = parse_filters(params)
    order, order_problems = parse_order(params)
    page, page_problems = parse_page(params)
    mark = reviews.watermark(session)  # before the rows: the stream sends anything newer
    rows, more = reviews.worklist(
        session, filters, order=order, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render(
        request,
        "worklist.html",
        user,
        rows=[
            row_view(r, role=user.key.role, hide_names=settings.hide_patient_names) for r in rows
        ],
        params=params,
        kept=kept_params(params),
        sorts=sort_headers(params, order),
        page=page,
        newer_url=page_url(params, page=page - 1) if page > 1 else None,
        older_url=page_url(params, page=page + 1) if more else None,
        problems=problems + order_problems + page_problems,
        scanners=reviews.scanners(session),
        since=str(mark),
        # new rows arrive at the top: live only where the top is the newest series
        live=page == 1 and order.is_default,
        hide_names=settings.hide_patient_names,
    )


@router.get("/series/{series_id}", response_class=HTMLResponse)
def series_page(
    series_id: int, request: Request, user: UserDep, session: SessionDep, settings: SettingsDep
) -> Response:
    data = series_data(
        session,
        series_id,
        request,
        role=user.key.role,
        hide_names=settings.hide_patient_names,
    )
    if data is None:
        raise WebNotFound(f"series {series_id} not found", user)
    return render(request, "series.html", user, series=data)
