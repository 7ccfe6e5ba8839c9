"""Celery tasks: ids in, a service call, nothing else. Idempotency lives in the service."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

from .celery_app import celery_app


@celery_app.task(
    name="amaqc.analyse_series",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def analyse_series(series_id: int) -> str:
    """Score every slice of the series without a verdict and write the series verdict."""
    from app.config import get_settings

    from .inference import analyse

    return analyse(get_settings(), series_id)
