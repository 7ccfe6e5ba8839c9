"""The worker's Celery app, configured from the settings (``amaqc worker`` runs it)."""

from __future__ import annotations

from app.config import get_settings
from app.queue import make_celery

celery_app = make_celery(get_settings().broker_url)
celery_app.conf.imports = ("app.worker.tasks",)
