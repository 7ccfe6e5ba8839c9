"""The worklist query: series with their newest verdict and newest review, filtered, sorted
and paginated. Like ``repo``: no commit.

A series' *label* is the newest review's when it has one (the reader's decision), else the
model's verdict; both are returned, so the page can show them side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from .models import STATUSES, Instance, Review, Series, SeriesVerdict, Study
from .repo import newest_verdict_id

SortKey = Literal["received", "probability", "scanner", "status"]
SORT_KEYS: tuple[SortKey, ...] = ("received", "probability", "scanner", "status")


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist shows; ``date_from``/``date_to`` bound the time received (UTC)."""

    flagged_only: bool = False
    unreviewed_only: bool = False
    scanner: str | None = None
    protocol: str | None = None  # case-insensitive substring
    date_from: datetime | None = None
    date_to: datetime | None = None


@dataclass(frozen=True)
class WorklistOrder:
    """How the worklist is sorted: by one of :data:`SORT_KEYS`, newest id breaking ties.

    ``status`` sorts in processing order (receiving, queued, processing, done, failed); rows
    without the sorted value (no verdict, no scanner) come last either way.
    """

    key: SortKey = "received"
    descending: bool = True

    @property
    def is_default(self) -> bool:
        return self == WorklistOrder()


@dataclass(frozen=True)
class WorklistRow:
    series: Series
    verdict: SeriesVerdict | None
    review: Review | None
    n_slices: int
    #: the series' study (patient context); None for a series without a Study Instance UID
    study: Study | None = None


def _newest_review() -> Any:
    return (
        select(func.max(Review.id))
        .where(Review.series_id == Series.id)
        .correlate(Series)
        .scalar_subquery()
    )


def _sort_column(key: SortKey) -> Any:
    if key == "probability":
        return SeriesVerdict.probability
    if key == "scanner":
        return Series.scanner
    if key == "status":
        return case({s: n for n, s in enumerate(STATUSES)}, value=Series.status, else_=99)
    return Series.received_at


def worklist(
    session: Session,
    filters: WorklistFilter,
    *,
    order: WorklistOrder | None = None,
    limit: int = 100,
    offset: int = 0,
    ids: Iterable[int] | None = None,
) -> tuple[list[WorklistRow], bool]:
    """One page of series (``limit`` rows from ``offset``) in ``order`` (default newest
    first), and whether more follow. ``ids`` restricts the query to those series (the event
    stream)."""
    order = order or WorklistOrder()
    n_slices = (
        select(func.count(Instance.id))
        .where(Instance.series_id == Series.id)
        .correlate(Series)
        .scalar_subquery()
    )
    query = (
        select(Series, SeriesVerdict, Review, n_slices, Study)
        .outerjoin(SeriesVerdict, SeriesVerdict.id == newest_verdict_id())
        .outerjoin(Review, Review.id == _newest_review())
        .outerjoin(Study, Study.id == Series.study_id)
    )
    if filters.flagged_only:
        query = query.where(SeriesVerdict.label == 1)
    if filters.unreviewed_only:
        query = query.where(Review.id.is_(None))
    if filters.scanner:
        query = query.where(Series.scanner == filters.scanner)
    if filters.protocol:
        query = query.where(Series.protocol.ilike(f"%{_escape_like(filters.protocol)}%", "\\"))
    if filters.date_from is not None:
        query = query.where(Series.received_at >= filters.date_from)
    if filters.date_to is not None:
        query = query.where(Series.received_at < filters.date_to)
    if ids is not None:
        query = query.where(Series.id.in_(list(ids)))
    column = _sort_column(order.key)
    ordered = column.desc() if order.descending else column.asc()
    tie = Series.id.desc() if order.descending else Series.id.asc()
    query = query.order_by(ordered.nulls_last(), tie).offset(max(offset, 0)).limit(limit + 1)
    rows = session.execute(query).all()
    items = [WorklistRow(s, v, r, int(n), st) for s, v, r, n, st in rows[:limit]]
    return items, len(rows) > limit


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def scanners(session: Session) -> list[str]:
    """The distinct scanner names seen, for the worklist's filter."""
    rows = session.scalars(select(Series.scanner).where(Series.scanner.is_not(None)).distinct())
    return sorted(s for s in rows if s)
