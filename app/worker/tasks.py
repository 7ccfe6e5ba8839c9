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


@celery_app.task(name="amaqc.train_model", acks_late=True)
def train_model(job_id: int) -> str:
    """Run training job ``job_id`` (queue ``training``) to its end; no automatic retry: a
    failed job says why and is started again by a new request."""
    from app.config import get_settings

    from .training import run_training_job

    return run_training_job(get_settings(), job_id)
