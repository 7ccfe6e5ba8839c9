"""``/healthz`` (the process answers), ``/readyz`` (DB, broker, active model), ``/metrics``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import SessionDep, SettingsDep
from app.db import repo
from app.queue import broker_reachable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """200 when the database, the broker and an active model are usable, else 503."""
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        version = repo.active_model_version(session)
        checks["database"] = "ok"
        if version is None:
            checks["model"] = "no active model version"
        elif not Path(version.checkpoint_path).is_file():
            checks["model"] = f"checkpoint of model version {version.name} is missing"
        else:
            checks["model"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
    checks["broker"] = "ok" if broker_reachable(settings.broker_url) else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
