"""Who is signed in to the web UI, as dependencies: pages redirect to ``/login`` when nobody
is, and answer 403 when the key's role may not see them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.templating import Jinja2Templates

from app.api.deps import SessionDep, SettingsDep, signed_in
from app.db.models import ApiKey

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")


class NotSignedIn(Exception):
    """A page was asked for without a valid session: the handler redirects to /login."""


class WebError(Exception):
    """A page that cannot be shown, rendered as ``error.html`` with ``status_code`` and the
    message (the nav bar shows ``user`` when one is signed in)."""

    status_code = 400

    def __init__(self, message: str, user: WebUser | None = None) -> None:
        super().__init__(message)
        self.message, self.user = message, user


class WebForbidden(WebError):
    """The signed-in key's role may not see the page (403)."""

    status_code = 403


class WebNotFound(WebError):
    """The page's object does not exist (404)."""

    status_code = 404


@dataclass(frozen=True)
class WebUser:
    key: ApiKey
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.key.role == "admin"


def web_user(request: Request, session: SessionDep, settings: SettingsDep) -> WebUser:
    found = signed_in(request, session, settings)
    if found is None:
        raise NotSignedIn
    key, web = found
    return WebUser(key, web.csrf)


def web_admin(user: Annotated[WebUser, Depends(web_user)]) -> WebUser:
    if not user.is_admin:
        raise WebForbidden(
            f"this page is for admin keys; you are signed in with a {user.key.role} key"
        )
    return user


UserDep = Annotated[WebUser, Depends(web_user)]
AdminDep = Annotated[WebUser, Depends(web_admin)]


def render(
    request: Request, name: str, user: WebUser | None, code: int = 200, **ctx: Any
) -> Response:
    """A page from ``templates/`` (never cached: pages show live state and patient data)."""
    return templates.TemplateResponse(
        request,
        name,
        {"user": user, **ctx},
        status_code=code,
        headers={"Cache-Control": "no-store"},
    )
