"""Worker heartbeats and the series they vouch for (the sweeper's prompt recovery).

A worker process that runs tasks writes its :class:`WorkerHeartbeat` row every few seconds;
``Series.worker`` names the process that marked a series ``processing``. Two questions follow:
which ``processing`` series belong to a process that went silent (killed: SIGKILL, the OOM
killer, a lost host), and which ``queued`` series cannot have a message in the broker any more,
since an inference worker has been idle for longer than it takes to receive one (a restarted
broker lost it, or a killed worker had taken it). Functions flush but never commit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import Session

from .models import Series, WorkerHeartbeat
from .types import utcnow

INFERENCE = "inference"


def process_name(pid: int | None = None) -> str:
    """The heartbeat name of process ``pid`` (default: this one) on this host."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def beat(
    session: Session, name: str, queues: str, started_at: datetime, idle_since: datetime | None
) -> None:
    """Write the heartbeat of worker process ``name`` now (the row is created if missing, e.g.
    after the sweeper pruned it while the database was unreachable)."""
    session.merge(
        WorkerHeartbeat(
            name=name,
            queues=queues,
            started_at=started_at,
            beat_at=utcnow(),
            idle_since=idle_since,
        )
    )
    session.flush()


def remove(session: Session, name: str) -> None:
    """Forget worker process ``name`` (it stopped cleanly, or it is known to be dead)."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def orphaned_series(session: Session, silent_for: timedelta) -> list[Series]:
    """``processing`` series whose worker process has written no heartbeat for ``silent_for``
    (and that started at least that long ago, so a worker that just took one is not judged)."""
    cutoff = utcnow() - silent_for
    alive = exists().where(WorkerHeartbeat.name == Series.worker, WorkerHeartbeat.beat_at > cutoff)
    return list(
        session.scalars(
            select(Series).where(
                Series.status == "processing",
                Series.worker.is_not(None),
                Series.started_at <= cutoff,
                ~alive,
            )
        )
    )


def lost_series(session: Session, silent_for: timedelta) -> list[Series]:
    """``queued`` series queued at least ``silent_for`` ago while a live inference worker has
    been idle for ``silent_for``: a message still in the broker would have reached it, so the
    message is gone and the series must be sent again."""
    cutoff = utcnow() - silent_for
    idle_worker = exists().where(
        WorkerHeartbeat.beat_at > cutoff,
        WorkerHeartbeat.idle_since <= cutoff,
        WorkerHeartbeat.queues.contains(INFERENCE),
    )
    return list(
        session.scalars(
            select(Series).where(Series.status == "queued", Series.queued_at <= cutoff, idle_worker)
        )
    )


def series_held_by(session: Session, name: str) -> list[Series]:
    """The ``processing`` series worker process ``name`` marked."""
    return list(
        session.scalars(select(Series).where(Series.status == "processing", Series.worker == name))
    )


def queued_series_ids(session: Session) -> list[int]:
    """Every ``queued`` series, oldest first."""
    return list(
        session.scalars(select(Series.id).where(Series.status == "queued").order_by(Series.id))
    )


def touch_queued(session: Session, series_ids: Sequence[int]) -> None:
    """Note that these queued series were just sent (so they are not judged lost again before
    another ``silent_for``)."""
    if series_ids:
        session.execute(
            update(Series)
            .where(and_(Series.id.in_(list(series_ids)), Series.status == "queued"))
            .values(queued_at=utcnow())
        )


def prune(session: Session, silent_for: timedelta) -> int:
    """Delete heartbeats silent for ``silent_for`` that no ``processing`` series names."""
    cutoff = utcnow() - silent_for
    holds = exists().where(Series.worker == WorkerHeartbeat.name, Series.status == "processing")
    result = session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at <= cutoff, ~holds)
    )
    return int(getattr(result, "rowcount", 0) or 0)
