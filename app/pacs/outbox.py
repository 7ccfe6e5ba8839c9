"""The PACS outbox: every series verdict's report reaches every destination, however long the
destination is down.

1. :func:`queue_reports` runs in the worker once a series verdict is committed (the
   ``analyse_series`` task's post-verdict hook): it writes one ``pacs_delivery`` row per
   destination for that verdict (idempotent: the verdict's digest is part of the row's key).
2. :func:`deliver` claims the rows that are due, builds each series' report once (the SR, and a
   heatmap capture per flagged slice) and C-STOREs it; a row becomes ``sent`` when the
   destination took every object, else it stays ``pending`` with the error and its next attempt
   ``pacs_retry_seconds * 2**(attempts - 1)`` later (at most ``pacs_retry_max_seconds``). A
   destination that cannot be reached holds all its pending rows until then, so each retry
   round costs one connection attempt (one timeout at worst), not one per waiting report.
3. The ``send_reports`` task calls :func:`deliver` and enqueues itself again for the moment the
   series' next row is due; the sweeper (API, listener) sends the task again for rows that are
   long overdue (:func:`wake_overdue`), so a lost message or a restarted worker loses nothing.

A claim moves ``next_attempt_at`` a lease ahead, conditioned on ``attempts``, so two workers
never send one row at once; a worker killed mid-send leaves the row due again after the lease.
A report is built from the database when it is sent, so what goes out is always the series'
current verdict: a row whose verdict was replaced becomes ``superseded`` when the newer
verdict's row exists (the same UIDs for the same verdict make a repeated send harmless).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import PacsDelivery
from app.db.session import session_scope
from app.db.types import utcnow

from .destinations import parse_destination
from .report import NoReport, SeriesReport, load_report
from .store import SendFailed, c_store

logger = logging.getLogger(__name__)

#: rows one :func:`deliver` call claims at most (the rest wait for the next call)
BATCH = 200
#: a pending row this long past its time has no task coming for it: the sweeper sends one
OVERDUE_SECONDS = 60.0


def lease_seconds(settings: Settings) -> float:
    """How long a claimed row is left alone: longer than one send can take."""
    return max(60.0, 4 * settings.pacs_timeout_seconds)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    return min(
        settings.pacs_retry_max_seconds,
        settings.pacs_retry_seconds * 2 ** min(max(attempts - 1, 0), 30),
    )


def queue_reports(settings: Settings, series_id: int) -> int:
    """Outbox rows for the series' current verdict, one per configured destination; returns
    how many are new. Nothing for a series without a DICOM report, nor (``pacs_send=flagged``)
    for a clean verdict."""
    targets = settings.pacs_targets
    if not targets:
        return 0
    with session_scope(settings.database_url) as session:
        try:
            report = load_report(session, settings, series_id)
        except NoReport as exc:
            logger.info("series %s: nothing for the PACS (%s)", series_id, exc)
            return 0
        if settings.pacs_send == "flagged" and not report.label:
            return 0
        queued = set(
            session.scalars(
                select(PacsDelivery.destination).where(
                    PacsDelivery.series_id == series_id, PacsDelivery.digest == report.digest
                )
            )
        )
        new = [str(t) for t in targets if str(t) not in queued]
        for destination in new:
            session.add(
                PacsDelivery(series_id=series_id, digest=report.digest, destination=destination)
            )
        try:
            session.flush()
        except IntegrityError:  # a concurrent delivery of the same job queued them first
            session.rollback()
            return 0
    return len(new)


@dataclass(frozen=True)
class Claimed:
    id: int
    series_id: int
    digest: str
    destination: str
    attempts: int


@dataclass
class Delivered:
    """What one :func:`deliver` call did (row counts)."""

    sent: int = 0
    failed: int = 0
    superseded: int = 0


def _claim(settings: Settings, series_id: int | None) -> list[Claimed]:
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds(settings))
    claimed = []
    with session_scope(settings.database_url) as session:
        query = select(PacsDelivery).where(
            PacsDelivery.status == "pending", PacsDelivery.next_attempt_at <= now
        )
        if series_id is not None:
            query = query.where(PacsDelivery.series_id == series_id)
        for row in list(session.scalars(query.order_by(PacsDelivery.id).limit(BATCH))):
            taken = session.execute(
                update(PacsDelivery)
                .where(PacsDelivery.id == row.id, PacsDelivery.attempts == row.attempts)
                .values(next_attempt_at=until, attempts=row.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(
                    Claimed(row.id, row.series_id, row.digest, row.destination, row.attempts + 1)
                )
    return claimed


def _finish(settings: Settings, row: Claimed, **values: object) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(PacsDelivery)
            .where(PacsDelivery.id == row.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _hold(settings: Settings, destination: str, until: datetime) -> None:
    """Every pending row of an unreachable destination waits until ``until`` at least, so the
    next attempt is one connection for all of them, not one per report."""
    with session_scope(settings.database_url) as session:
        session.execute(
            update(PacsDelivery)
            .where(
                PacsDelivery.destination == destination,
                PacsDelivery.status == "pending",
                PacsDelivery.next_attempt_at < until,
            )
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )


def _failed(settings: Settings, row: Claimed, error: str, *, unreachable: bool = False) -> None:
    wait = backoff_seconds(settings, row.attempts)
    logger.warning(
        "PACS report of series %s to %s not accepted (attempt %d, next in %.0f s): %s",
        row.series_id,
        row.destination,
        row.attempts,
        wait,
        error,
    )
    until = utcnow() + timedelta(seconds=wait)
    if unreachable:
        _hold(settings, row.destination, until)
    _finish(settings, row, last_error=error[:2000], next_attempt_at=until)


def build_objects(settings: Settings, report: SeriesReport) -> list[Dataset]:
    """What goes to the PACS for ``report``: the SR, then the heatmap captures (if asked)."""
    from .capture import build_captures
    from .sr import build_sr

    objects: list[Dataset] = [build_sr(report)]
    if settings.pacs_heatmaps:
        objects += build_captures(settings, report)
    return objects


def _superseded(settings: Settings, row: Claimed, digest: str) -> bool:
    """True when the verdict changed and the newer verdict has its own row here."""
    if digest == row.digest:
        return False
    with session_scope(settings.database_url) as session:
        newer = session.scalar(
            select(func.count(PacsDelivery.id)).where(
                PacsDelivery.series_id == row.series_id,
                PacsDelivery.digest == digest,
                PacsDelivery.destination == row.destination,
            )
        )
    return bool(newer)


def deliver(settings: Settings, series_id: int | None = None) -> Delivered:
    """Send every due report (of ``series_id`` only, if given); see the module docstring."""
    done = Delivered()
    by_destination: dict[str, list[Claimed]] = defaultdict(list)
    for row in _claim(settings, series_id):
        by_destination[row.destination].append(row)
    built: dict[int, tuple[SeriesReport, list[Dataset]] | str] = {}
    for destination, rows in by_destination.items():
        down: str | None = None
        for row in rows:
            if down is not None:  # it failed a moment ago: wait with the others
                _failed(settings, row, f"not tried: {down}")
                done.failed += 1
                continue
            if row.series_id not in built:
                built[row.series_id] = _build(settings, row.series_id)
            item = built[row.series_id]
            if isinstance(item, str):
                _failed(settings, row, item)
                done.failed += 1
                continue
            report, objects = item
            if _superseded(settings, row, report.digest):
                _finish(settings, row, status="superseded", last_error=None)
                done.superseded += 1
                continue
            try:
                count = c_store(
                    parse_destination(destination),
                    objects,
                    calling_ae=settings.dicom_ae_title,
                    timeout=settings.pacs_timeout_seconds,
                )
            except SendFailed as exc:
                if exc.unreachable:
                    down = str(exc)
                _failed(settings, row, str(exc), unreachable=exc.unreachable)
                done.failed += 1
                continue
            except ValueError as exc:  # a malformed destination stored in the row
                _failed(settings, row, str(exc))
                done.failed += 1
                continue
            _finish(
                settings,
                row,
                status="sent",
                sent_at=utcnow(),
                objects=count,
                sr_uid=str(objects[0].SOPInstanceUID),
                last_error=None,
            )
            done.sent += 1
            logger.info("series %s: report sent to %s", row.series_id, destination)
    return done


def _build(settings: Settings, series_id: int) -> tuple[SeriesReport, list[Dataset]] | str:
    """The series' report and its objects, or why there are none."""
    try:
        with session_scope(settings.database_url) as session:
            report = load_report(session, settings, series_id)
        return report, build_objects(settings, report)
    except NoReport as exc:
        return f"no report: {exc}"
    except Exception as exc:  # a bug or bad data must not stop the other reports
        logger.exception("series %s: building the PACS report failed", series_id)
        return f"building the report failed: {exc!r}"


def next_due_in(settings: Settings, series_id: int) -> float | None:
    """Seconds until the series' next pending row is due (0 if due now); None: none pending."""
    with session_scope(settings.database_url) as session:
        due = session.scalar(
            select(func.min(PacsDelivery.next_attempt_at)).where(
                PacsDelivery.series_id == series_id, PacsDelivery.status == "pending"
            )
        )
    if due is None:
        return None
    return max(0.0, (due - utcnow()).total_seconds())


def status_counts(session: Session) -> dict[str, int]:
    """Outbox rows (one per report and destination) by status, for ``/metrics``."""
    rows = session.execute(
        select(PacsDelivery.status, func.count(PacsDelivery.id)).group_by(PacsDelivery.status)
    )
    return {str(status): int(count) for status, count in rows}


def wake_overdue(settings: Settings, now: datetime | None = None) -> list[int]:
    """Make pending rows more than :data:`OVERDUE_SECONDS` past their time due now, and return
    their series (the sweeper sends the task for each); each row is woken at most once per
    ``OVERDUE_SECONDS``."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        late = PacsDelivery.next_attempt_at <= now - timedelta(seconds=OVERDUE_SECONDS)
        pending = PacsDelivery.status == "pending"
        ids = sorted(set(session.scalars(select(PacsDelivery.series_id).where(pending, late))))
        if ids:
            session.execute(
                update(PacsDelivery)
                .where(pending, late)
                .values(next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
    return ids
