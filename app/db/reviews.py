"""Queries of the radiographer UI: reviews, the label export, and the change watermarks the
worklist's event stream polls (the worklist itself: ``worklist.py``). Like ``repo``: flush,
never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Mapped, Session

from .models import ApiKey, Instance, ModelVersion, Review, ReviewSlice, Series, SeriesVerdict
from .worklist import WorklistFilter, WorklistOrder, WorklistRow, scanners, worklist

__all__ = ["WorklistFilter", "WorklistOrder", "WorklistRow", "scanners", "worklist"]

FINAL_STATUSES = ("done", "failed")


# --- reviews ---------------------------------------------------------------------------


def add_review(
    session: Session,
    series: Series,
    key: ApiKey,
    *,
    label: int,
    slices: dict[int, int],
    comment: str,
    verdict: SeriesVerdict | None,
    sources: dict[int, str] | None = None,
    model_slices_confirmed: bool = False,
) -> Review:
    """A new review of ``series`` by ``key``; ``slices`` maps instance ids to labels and
    ``sources`` instance ids to who set them (``reader``, the default, or ``model``)."""
    review = Review(
        series_id=series.id,
        api_key_id=key.id,
        reviewer=key.name,
        label=label,
        model_label=verdict.label if verdict else None,
        model_probability=verdict.probability if verdict else None,
        model_version_id=verdict.model_version_id if verdict else None,
        comment=comment,
        model_slices_confirmed=model_slices_confirmed,
    )
    sources = sources or {}
    review.slices = [
        ReviewSlice(instance_id=i, label=v, source=sources.get(i, "reader"))
        for i, v in sorted(slices.items())
    ]
    session.add(review)
    session.flush()
    return review


def series_reviews(session: Session, series_id: int) -> list[Review]:
    """Every review of a series, newest first."""
    return list(
        session.scalars(
            select(Review).where(Review.series_id == series_id).order_by(Review.id.desc())
        )
    )


def model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


@dataclass(frozen=True)
class ExportSlice:
    """One labelled slice of the export."""

    instance: Instance
    series: Series
    review: Review
    label: int
    source: str  # "slice" (a slice label of the review) or "series" (a clean series)
    model_version: str | None
    shares_file: bool = field(default=False)  # other frames of the same stored file exist
    #: who set a slice label: "reader", or "model" (accepted from the model's call and
    #: confirmed by the reader); "" for a label that follows from the series ("series")
    label_by: str = ""


def newest_reviews(session: Session) -> list[Review]:
    """The newest review of every reviewed series (each series' label)."""
    newest = select(func.max(Review.id)).group_by(Review.series_id).scalar_subquery()
    return list(session.scalars(select(Review).where(Review.id.in_(newest))))


def usable_slice_label(item: ReviewSlice, review: Review) -> bool:
    """The training-label rule: a slice label the reader set counts; one accepted from the
    model counts only when the reader confirmed the model-accepted labels, so the model is
    never taught its own unchecked calls."""
    return item.source != "model" or review.model_slices_confirmed


def export_slices(session: Session) -> list[ExportSlice]:
    """The labelled slices of each series' newest review, series by series.

    A slice's label is the reviewer's label for it (one accepted from the model only when the
    reader confirmed it, :func:`usable_slice_label`); without one, every slice of a series the
    reviewer called clean is clean, and a slice of an artifact series stays unlabelled (which
    of its slices show the artifact is not known).
    """
    reviews = newest_reviews(session)
    if not reviews:
        return []
    series_ids = [r.series_id for r in reviews]
    series = {s.id: s for s in session.scalars(select(Series).where(Series.id.in_(series_ids)))}
    instances = list(
        session.scalars(
            select(Instance)
            .where(Instance.series_id.in_(series_ids))
            .order_by(Instance.series_id, Instance.instance_number, Instance.id)
        )
    )
    per_file: dict[str, int] = {}
    for inst in instances:
        per_file[inst.storage_path] = per_file.get(inst.storage_path, 0) + 1
    versions = {v.id: v.name for v in model_versions(session)}
    by_series: dict[int, list[Instance]] = {}
    for inst in instances:
        by_series.setdefault(inst.series_id, []).append(inst)
    out: list[ExportSlice] = []
    for review in sorted(reviews, key=lambda r: r.series_id):
        labelled = {s.instance_id: s for s in review.slices if usable_slice_label(s, review)}
        for inst in by_series.get(review.series_id, []):
            if inst.id in labelled:
                label, source, by = labelled[inst.id].label, "slice", labelled[inst.id].source
            elif review.label == 0:
                label, source, by = 0, "series", ""
            else:
                continue
            out.append(
                ExportSlice(
                    instance=inst,
                    series=series[review.series_id],
                    review=review,
                    label=label,
                    source=source,
                    model_version=versions.get(review.model_version_id or -1),
                    shares_file=per_file[inst.storage_path] > 1,
                    label_by=by,
                )
            )
    return out


# --- change watermarks for the event stream ---------------------------------------------


@dataclass(frozen=True)
class Watermark:
    """The newest series, verdict and review ids seen: ``s12.v9.r3`` in an event id."""

    series: int
    verdict: int
    review: int

    def __str__(self) -> str:
        return f"s{self.series}.v{self.verdict}.r{self.review}"

    @classmethod
    def parse(cls, text: str) -> Watermark | None:
        try:
            s, v, r = (int(part[1:]) for part in text.split("."))
        except ValueError:
            return None
        return cls(s, v, r) if text == str(cls(s, v, r)) else None


def watermark(session: Session) -> Watermark:
    def newest(column: Mapped[int], *where: ColumnElement[bool]) -> int:
        return int(session.scalar(select(func.max(column)).where(*where)) or 0)

    return Watermark(
        newest(Series.id),
        newest(SeriesVerdict.id, SeriesVerdict.shadow.is_(False)),
        newest(Review.id),
    )


#: Ids are handed out at insert but rows become visible at commit: on PostgreSQL a transaction
#: holding review id 10 can commit after one holding id 11, when the watermark has passed 10.
#: So each poll looks again at the newest ``LOOKBACK`` ids of every table below the watermark.
LOOKBACK = 256


class ChangeFeed:
    """Series that gained a row (series, verdict or review) since the last poll.

    Keeps the watermark (the newest ids seen) and the ids already reported in the last
    ``LOOKBACK`` below it, so a row that commits late with a lower id than one already seen is
    still reported once. A feed started from a watermark (a reconnecting browser) counts every
    row at or below it as seen.
    """

    def __init__(self, session: Session, mark: Watermark | None = None) -> None:
        self.mark = mark or watermark(session)
        self._seen = {
            name: {i for i, _ in self._rows(session, name) if i <= getattr(self.mark, name)}
            for name in ("series", "verdict", "review")
        }

    def _rows(self, session: Session, name: str) -> list[tuple[int, int]]:
        """(row id, series id) of ``name``'s rows above the look-back floor."""
        floor = getattr(self.mark, name) - LOOKBACK
        if name == "series":
            query = select(Series.id, Series.id).where(Series.id > floor)
        elif name == "verdict":
            query = select(SeriesVerdict.id, SeriesVerdict.series_id).where(
                SeriesVerdict.id > floor, SeriesVerdict.shadow.is_(False)
            )
        else:
            query = select(Review.id, Review.series_id).where(Review.id > floor)
        return [(int(i), int(s)) for i, s in session.execute(query)]

    def poll(self, session: Session) -> set[int]:
        changed: set[int] = set()
        newest = {}
        for name, seen in self._seen.items():
            rows = self._rows(session, name)
            changed |= {series for i, series in rows if i not in seen}
            seen |= {i for i, _ in rows}
            newest[name] = max([getattr(self.mark, name), *(i for i, _ in rows)])
            # ids below the next floor can no longer be looked at again: forget them
            floor = newest[name] - LOOKBACK
            seen -= {i for i in seen if i <= floor}
        self.mark = Watermark(newest["series"], newest["verdict"], newest["review"])
        return changed


def statuses(session: Session, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Series.id, Series.status).where(Series.id.in_(list(ids))))
    return {int(i): s for i, s in rows}


def unfinished(session: Session) -> dict[int, str]:
    """Series still receiving, queued or processing, with their status."""
    rows = session.execute(
        select(Series.id, Series.status).where(Series.status.not_in(FINAL_STATUSES))
    )
    return {int(i): s for i, s in rows}
