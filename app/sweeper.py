"""The sweeper: the database, not the queue, is the source of truth.

Every ``sweep_interval_seconds`` it (1) closes slice-built series that got no new instance for
``series_stable_seconds`` and enqueues their series verdict; (2) enqueues again every
``processing`` series whose worker process has written no heartbeat for
``worker_silent_seconds`` (killed: SIGKILL, the OOM killer); (3) sends again every ``queued``
series while an inference worker has been idle that long (its message was lost: a restarted
broker, a worker killed as it took it, or the broker was down when it was uploaded); and (4), as
a last resort, enqueues again every series stuck in ``queued`` / ``processing`` for longer than
``stuck_after_seconds``. Jobs are idempotent, so a duplicate is harmless. Each pass also sends
the PACS outbox's task again for reports long past their next attempt (:func:`wake_reports`).
:func:`release_worker` does (2) at once for a worker known to be dead (``amaqc up``'s supervisor
saw its child exit), and the :class:`Sweeper` does (3) at once for every queued series when a
Redis broker comes back after this process lost it, or restarted between two passes
(:class:`BrokerWatch`).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from app.config import Settings
from app.db import heartbeats, repo
from app.db.session import session_scope
from app.queue import broker_identity, enqueue_analysis, enqueue_reports

logger = logging.getLogger(__name__)


def sweep(settings: Settings) -> list[int]:
    """One pass; returns the ids of the series it enqueued (a broker that refuses the first
    of them is not asked for the rest: they stay queued for the next pass)."""
    silent = timedelta(seconds=settings.worker_silent_seconds)
    with session_scope(settings.database_url) as session:
        stable = repo.stable_series(session, timedelta(seconds=settings.series_stable_seconds))
        for series in stable:
            repo.mark_queued(session, series, complete=True)
        stuck = repo.stuck_series(session, timedelta(seconds=settings.stuck_after_seconds))
        for series in stuck:
            logger.warning("series %s stuck in %s: enqueued again", series.id, series.status)
            repo.mark_queued(session, series)
        orphaned = heartbeats.orphaned_series(session, silent)
        for series in orphaned:
            logger.warning(
                "series %s: its worker %s went silent; enqueued again", series.id, series.worker
            )
            repo.mark_queued(session, series)
        lost = heartbeats.lost_series(session, silent)  # (not those just marked: queued now)
        for series in lost:
            logger.warning(
                "series %s: still queued while a worker idled (message lost); sent again",
                series.id,
            )
        heartbeats.prune(session, timedelta(seconds=settings.stuck_after_seconds))
        ids = [s.id for s in stable + stuck + orphaned + lost]
        lost_ids = {s.id for s in lost}
    sent = _send(settings, ids)  # after the commit
    if resent := [i for i in sent if i in lost_ids]:
        with session_scope(settings.database_url) as session:
            heartbeats.touch_queued(session, resent)
    return ids


def release_worker(settings: Settings, worker: str) -> list[int]:
    """Enqueue again, at once, the series worker process ``worker`` was processing, and forget
    its heartbeat: the caller knows it is dead. Returns the series ids."""
    with session_scope(settings.database_url) as session:
        held = heartbeats.series_held_by(session, worker)
        for series in held:
            logger.warning("series %s: its worker %s died; enqueued again", series.id, worker)
            repo.mark_queued(session, series)
        heartbeats.remove(session, worker)
        ids = [s.id for s in held]
    _send(settings, ids)
    return ids


def resend_queued(settings: Settings) -> bool:
    """Send every ``queued`` series again (the broker came back: what it held may be gone).
    True when all were sent."""
    with session_scope(settings.database_url) as session:
        ids = heartbeats.queued_series_ids(session)
    if ids:
        logger.warning("the broker is back: %d queued series sent again", len(ids))
    sent = _send(settings, ids)
    with session_scope(settings.database_url) as session:
        heartbeats.touch_queued(session, sent)
    return len(sent) == len(ids)


def wake_reports(settings: Settings) -> list[int]:
    """Send the PACS outbox's task again for the series whose reports are long overdue (the
    message was lost, or the worker that held it died): ``app.pacs.outbox.wake_overdue``."""
    from app.pacs.outbox import wake_overdue

    ids = wake_overdue(settings)
    for series_id in ids:
        if not enqueue_reports(settings.broker_url, series_id):
            break
    return ids


class BrokerWatch:
    """Tells when the broker came back: this process could not reach it, or another server
    answers than at the last look (a Redis restarted between two looks). Brokers that cannot
    tell who they are (the local broker) never come back."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.watchable = broker_url.startswith(("redis://", "rediss://"))
        self._seen: str | None = None
        self._missed = False

    def came_back(self) -> bool:
        if not self.watchable:
            return False
        now = broker_identity(self.broker_url)
        if now is None:
            self._missed = True
            return False
        back = self._missed or (self._seen is not None and now != self._seen)
        self._seen, self._missed = now, False
        return back


def _send(settings: Settings, series_ids: list[int]) -> list[int]:
    """Enqueue each series; stop at the first the broker refuses. Returns those sent."""
    sent = []
    for series_id in series_ids:
        if not enqueue_analysis(settings.broker_url, series_id):
            break
        sent.append(series_id)
    return sent


class Sweeper(threading.Thread):
    """Runs :func:`sweep` in the background until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="amaqc-sweeper", daemon=True)
        self.settings = settings
        self._stop_event = threading.Event()

    def run(self) -> None:
        watch = BrokerWatch(self.settings.broker_url)
        resend = False
        while not self._stop_event.wait(self.settings.sweep_interval_seconds):
            try:
                resend = watch.came_back() or resend
                if resend:  # until every queued series went out
                    resend = not resend_queued(self.settings)
                sweep(self.settings)
                wake_reports(self.settings)
            except Exception:  # never let one bad pass end the loop
                logger.exception("sweep failed")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
