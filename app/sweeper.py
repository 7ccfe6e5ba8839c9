"""The sweeper: the database, not the queue, is the source of truth.

Every ``sweep_interval_seconds`` it (1) closes slice-built series that got no new instance for
``series_stable_seconds`` and enqueues their series verdict, and (2) enqueues again every
series stuck in ``queued`` / ``processing`` for longer than ``stuck_after_seconds`` (a lost
message, a restarted broker or a killed worker). Jobs are idempotent, so a duplicate is harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from app.config import Settings
from app.db import repo
from app.db.session import session_scope
from app.queue import enqueue_analysis

logger = logging.getLogger(__name__)


def sweep(settings: Settings) -> list[int]:
    """One pass; returns the ids of the series it enqueued."""
    with session_scope(settings.database_url) as session:
        stable = repo.stable_series(session, timedelta(seconds=settings.series_stable_seconds))
        for series in stable:
            repo.mark_queued(session, series, complete=True)
        stuck = repo.stuck_series(session, timedelta(seconds=settings.stuck_after_seconds))
        for series in stuck:
            logger.warning("series %s stuck in %s: enqueued again", series.id, series.status)
            repo.mark_queued(session, series)
        ids = [s.id for s in stable + stuck]
    for series_id in ids:  # after the commit
        enqueue_analysis(settings.broker_url, series_id)
    return ids


class Sweeper(threading.Thread):
    """Runs :func:`sweep` in the background until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="amaqc-sweeper", daemon=True)
        self.settings = settings
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.sweep_interval_seconds):
            try:
                sweep(self.settings)
            except Exception:  # never let one bad pass end the loop
                logger.exception("sweep failed")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
