"""Celery tasks: ids in, a service call, nothing else. Idempotency lives in the service."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

from app.notify import DeliveryFailed

from .celery_app import task


@task(
    name="amaqc.analyse_series",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError, ConnectionError),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def analyse_series(series_id: int) -> str:
    """Score every slice of the series without a verdict and write the series verdict; a
    new series verdict is then pushed to the webhook (when one is set)."""
    from app.config import get_settings

    from .inference import analyse

    settings = get_settings()

    def notify() -> None:  # at once, not after the version in shadow mode scored the series
        if settings.webhook_url:
            notify_series.apply_async((series_id,), queue="inference")

    return analyse(settings, series_id, on_verdict=notify)


@task(
    name="amaqc.notify_series",
    acks_late=True,
    autoretry_for=(DeliveryFailed, OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=10,
)
def notify_series(series_id: int) -> str:
    """POST the series' verdict event to ``AMAQC_WEBHOOK_URL`` (retried while it is down)."""
    from app.config import get_settings
    from app.notify import notify_series as send

    return send(get_settings(), series_id)


@task(name="amaqc.train_model", acks_late=True)
def train_model(job_id: int) -> str:
    """Run training job ``job_id`` (queue ``training``) to its end; no automatic retry: a
    failed job says why and is started again by a new request."""
    from app.config import get_settings

    from .training import run_training_job

    return run_training_job(get_settings(), job_id)
