"""Celery tasks: ids in, a service call, nothing else. Idempotency lives in the service."""

from __future__ import annotations

import logging

from sqlalchemy.exc import InterfaceError, OperationalError

from app.config import Settings
from app.notify import DeliveryFailed
from app.queue import SEND_REPORTS

from .celery_app import task

logger = logging.getLogger(__name__)


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
        if settings.pacs_destinations:
            queue_for_pacs(settings, series_id)

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


def queue_for_pacs(settings: Settings, series_id: int) -> None:
    """The series' report into the PACS outbox and ``send_reports`` enqueued; never raises
    (the verdict is stored: a failure here is logged and must not fail its job)."""
    from app.pacs.outbox import queue_reports

    try:
        if queue_reports(settings, series_id):
            send_reports.apply_async((series_id,), queue="inference")
    except Exception:
        logger.exception("series %s: the PACS report was not queued", series_id)


@task(
    name=SEND_REPORTS,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=None,
)
def send_reports(series_id: int) -> str:
    """C-STORE the due PACS reports (``app/pacs/outbox.py``); while the series still has one
    pending, this task is enqueued again for the moment it is due."""
    from app.config import get_settings
    from app.pacs.outbox import deliver, next_due_in

    settings = get_settings()
    done = deliver(settings)
    wait = next_due_in(settings, series_id)
    if wait is not None:
        send_reports.apply_async((series_id,), queue="inference", countdown=max(wait, 0.5))
    return f"sent {done.sent}, failed {done.failed}, superseded {done.superseded}"


@task(name="amaqc.train_model", acks_late=True)
def train_model(job_id: int) -> str:
    """Run training job ``job_id`` (queue ``training``) to its end; no automatic retry: a
    failed job says why and is started again by a new request."""
    from app.config import get_settings

    from .training import run_training_job

    return run_training_job(get_settings(), job_id)
