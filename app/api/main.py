"""The FastAPI application: routers, JSON errors, metrics, and the sweeper.

The API process never imports torch (a test checks): decoding uses ``training.data.readers``,
inference happens in the Celery worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError

from app.config import Settings, get_settings
from app.ingest import limits
from app.ingest.errors import IngestError
from app.sweeper import Sweeper
from app.web import admin as web_admin
from app.web import events as web_events
from app.web import routes as web_routes
from app.web.deps import HERE as WEB_DIR
from app.web.deps import NotSignedIn, WebError, render

from .metrics import Metrics
from .routes import (
    dicomweb,
    health,
    ingest,
    instances,
    models,
    reports,
    reviews,
    series,
    thresholds,
    training_jobs,
)

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(ingest.router)
api_router.include_router(series.router)
api_router.include_router(reports.router)
api_router.include_router(instances.router)
api_router.include_router(reviews.router)
api_router.include_router(training_jobs.router)
api_router.include_router(models.router)
api_router.include_router(thresholds.router)


def _settings(app: FastAPI) -> Settings:
    provider = app.dependency_overrides.get(get_settings, get_settings)
    settings: Settings = provider()
    return settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = _settings(app)
    sweeper = Sweeper(settings) if settings.sweep_interval_seconds > 0 else None
    if sweeper:
        sweeper.start()
    yield
    if sweeper:
        sweeper.stop()


async def _ingest_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IngestError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


#: what a 503 asks the client to wait before it sends again (the database restarting)
RETRY_AFTER_SECONDS = 5


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The database cannot be reached (or SQLite stayed locked): nothing was stored. A broker
    outage never comes here: an upload is stored and queued once the broker is back."""
    return JSONResponse(
        {"detail": "the database is unavailable: nothing was stored; send it again later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _out_of_range(_: Request, exc: Exception) -> JSONResponse:
    """An id or cursor past the database's 64-bit integers (SQLite raises OverflowError): no
    row can have it."""
    return JSONResponse(
        {"detail": f"a number in the request is out of range ({exc}); expected at most 2^63 - 1"},
        status_code=422,
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
        for e in exc.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def _not_signed_in(_: Request, __: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


async def _web_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WebError)
    return render(request, "error.html", exc.user, exc.status_code, message=exc.message)


def _body_limit(app: FastAPI) -> Callable[..., Awaitable[Response]]:
    """Refuse a request whose Content-Length is over the upload limit before reading it."""

    async def check(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length", "")
        settings = _settings(app)
        if length.isdigit() and int(length) > settings.max_request_bytes:
            return JSONResponse(
                {"detail": limits.upload_too_large(settings, int(length))}, status_code=413
            )
        return await call_next(request)

    return check


def create_app() -> FastAPI:
    app = FastAPI(
        title="amaqc",
        summary="Post-scan MRI quality control: artifact verdicts for slices and series.",
        lifespan=lifespan,
    )
    app.state.metrics = Metrics(lambda: _settings(app))
    app.middleware("http")(_body_limit(app))
    app.middleware("http")(app.state.metrics.middleware)
    app.add_exception_handler(IngestError, _ingest_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    for unavailable in (OperationalError, InterfaceError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.include_router(api_router)
    app.include_router(dicomweb.router)
    app.include_router(health.router)
    # the web UI: radiographer pages and admin pages
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(WebError, _web_error)
    app.include_router(web_routes.router)
    app.include_router(web_admin.router)
    app.include_router(web_events.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.openapi = _openapi_with_our_422(app)  # type: ignore[method-assign]
    return app


#: what :func:`_validation_error` answers, as the schema documents it
_VALIDATION_ERROR = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {
        "detail": {
            "type": "string",
            "title": "Detail",
            "description": "every problem, 'field: message', joined by '; '",
        }
    },
    "required": ["detail"],
}


def _openapi_with_our_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 as its default body (``detail``: a list of errors); ours is one
    sentence (``_validation_error``): the schema says what the API answers."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = _VALIDATION_ERROR
        return build()

    return openapi


app = create_app()
