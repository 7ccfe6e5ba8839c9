"""The heartbeat of a worker process that runs tasks (torch-free).

Celery's signals drive it: ``worker_process_init`` (sent in the process that executes tasks:
the worker itself with the solo pool, each child with prefork) starts a thread that writes the
process's ``worker_heartbeat`` row every ``worker_heartbeat_seconds``; ``task_prerun`` and
``task_postrun`` mark it busy and idle at once (the heartbeat thread writes the change, so a
task does not wait for those two commits); a clean shutdown deletes the row. A process that
is killed simply stops beating, and the sweeper (``app.sweeper``) acts on the silence.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from celery import signals

from app.config import Settings, get_settings
from app.db import heartbeats
from app.db.session import session_scope
from app.db.types import utcnow

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Keeps ``worker_heartbeat`` row ``name`` fresh until :meth:`stop` (which deletes it)."""

    def __init__(self, settings: Settings, queues: str, name: str | None = None) -> None:
        super().__init__(name="amaqc-heartbeat", daemon=True)
        self.settings, self.queues = settings, queues
        self.worker = name or heartbeats.process_name()
        self.started_at: datetime = utcnow()
        self.idle_since: datetime | None = self.started_at
        self._stop_event = threading.Event()
        self._changed = threading.Event()  # busy or idle since the last write
        self._lock = threading.Lock()

    def _write(self) -> None:
        with self._lock:  # busy/idle (task thread) and the beat (this thread) never interleave
            try:
                with session_scope(self.settings.database_url) as session:
                    heartbeats.beat(
                        session, self.worker, self.queues, self.started_at, self.idle_since
                    )
            except Exception as exc:  # the database is down: beat again next time
                logger.warning("worker %s: heartbeat not written (%s)", self.worker, exc)

    def start(self) -> None:
        self._write()  # the row exists before the first task runs
        super().start()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._changed.wait(self.settings.worker_heartbeat_seconds)
            self._changed.clear()
            if not self._stop_event.is_set():
                self._write()  # the state as it is now: a change made meanwhile is not lost

    def busy(self) -> None:
        self.idle_since = None
        self._written_soon()

    def idle(self) -> None:
        self.idle_since = utcnow()
        self._written_soon()

    def _written_soon(self) -> None:
        """The heartbeat thread writes the new state at once (issue 18: a task no longer waits
        for two commits, an fsync each on SQLite); without that thread, this one writes it."""
        if self.is_alive() and not self._stop_event.is_set():
            self._changed.set()
        else:
            self._write()

    def stop(self) -> None:
        self._stop_event.set()
        self._changed.set()
        if self.is_alive():
            self.join(timeout=5)
        with self._lock:
            try:
                with session_scope(self.settings.database_url) as session:
                    heartbeats.remove(session, self.worker)
            except Exception as exc:
                logger.warning("worker %s: heartbeat row not removed (%s)", self.worker, exc)


_current: dict[str, Heartbeat] = {}


def current() -> Heartbeat | None:
    """This process's heartbeat, if it runs one."""
    return _current.get("heartbeat")


def _queues() -> str:
    """The queues this worker consumes (``amaqc worker --queues``)."""
    from .celery_app import celery_app

    return ",".join(sorted(celery_app.amqp.queues.consume_from)) or "inference"


def _start(**_: Any) -> None:
    heartbeat = Heartbeat(get_settings(), _queues())
    heartbeat.start()
    _current["heartbeat"] = heartbeat


def _busy(**_: Any) -> None:
    if (heartbeat := current()) is not None:
        heartbeat.busy()


def _idle(**_: Any) -> None:
    if (heartbeat := current()) is not None:
        heartbeat.idle()


def _stop(**_: Any) -> None:
    heartbeat = _current.pop("heartbeat", None)
    if heartbeat is not None:
        heartbeat.stop()


signals.worker_process_init.connect(_start)
signals.task_prerun.connect(_busy)
signals.task_postrun.connect(_idle)
signals.worker_process_shutdown.connect(_stop)
signals.worker_shutdown.connect(_stop)
