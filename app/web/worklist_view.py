"""What the worklist shows: its rows, filters, sort order and pages, from query parameters and
database rows. Every choice is in the URL (``?flagged=1&sort=probability&dir=desc&page=2``), so
a reload, a bookmark or the back button shows the same list."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from app.api.schemas import label_name
from app.db.worklist import SORT_KEYS, WorklistFilter, WorklistOrder, WorklistRow

from .deps import templates
from .views import context_view, review_state

FILTER_PARAMS = ("flagged", "unreviewed", "scanner", "protocol", "from", "to")
#: the direction a column sorts in when its header is first clicked
FIRST_DIRECTION = {"received": "desc", "probability": "desc", "scanner": "asc", "status": "asc"}


def row_view(row: WorklistRow, *, role: str, hide_names: bool) -> dict[str, Any]:
    """One worklist row as plain values (rendered by ``_row.html``).

    ``patient`` is the series' patient and study context (:func:`views.context_view`) for a
    ``role`` that may see it, else None; ``hide_names`` leaves patient names out.

    ``label`` is the series' label: the newest review's (``label_by`` the reviewer) when it
    was reviewed, else the model's; the row is red (``flagged``) only when that label is
    artifact, so a series a reader overrode to clean is not shown as an artifact.
    """
    s, v, review = row.series, row.verdict, row.review
    model_label = label_name(v.label) if v else None
    label = label_name(review.label) if review else model_label
    return {
        "id": s.id,
        "received_at": s.received_at.isoformat(timespec="seconds"),
        "received_text": s.received_at.strftime("%Y-%m-%d %H:%M:%S"),
        "scanner": s.scanner or "",
        "protocol": s.protocol or "",
        "n_slices": row.n_slices,
        "status": s.status,
        "label": label,
        "label_by": review.reviewer if review else ("model" if v else None),
        "model_label": model_label,
        "flagged": label == "artifact",
        "probability": f"{v.probability:.2f}" if v else "",
        "flagged_count": v.flagged_count if v else None,
        "review": review_state(review),
        "patient": context_view(s, row.study, role=role, hide_names=hide_names),
    }


def render_row(row: WorklistRow, *, role: str, hide_names: bool) -> str:
    return templates.get_template("_row.html").render(
        row=row_view(row, role=role, hide_names=hide_names)
    )


def parse_filters(params: dict[str, str]) -> tuple[WorklistFilter, list[str]]:
    """The worklist filter from query parameters, and a message per unusable one."""
    problems: list[str] = []

    def day(name: str) -> datetime | None:
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        except ValueError:
            problems.append(f"{name}: {text!r} is not a date (YYYY-MM-DD); ignored")
            return None

    date_to = day("to")
    filters = WorklistFilter(
        flagged_only=params.get("flagged") in ("1", "on", "true"),
        unreviewed_only=params.get("unreviewed") in ("1", "on", "true"),
        scanner=params.get("scanner", "").strip() or None,
        protocol=params.get("protocol", "").strip() or None,
        date_from=day("from"),
        date_to=date_to + timedelta(days=1) if date_to else None,  # "to" includes that day
    )
    return filters, problems


def parse_order(params: dict[str, str]) -> tuple[WorklistOrder, list[str]]:
    """The sort order from ``sort`` and ``dir``, and a message per unusable one."""
    problems: list[str] = []
    key = params.get("sort", "").strip() or "received"
    if key not in SORT_KEYS:
        problems.append(f"sort: {key!r} is not one of {', '.join(SORT_KEYS)}; sorted by time")
        key = "received"
    direction = params.get("dir", "").strip() or FIRST_DIRECTION[key]
    if direction not in ("asc", "desc"):
        problems.append(f"dir: {direction!r} is not asc or desc; {FIRST_DIRECTION[key]} used")
        direction = FIRST_DIRECTION[key]
    return WorklistOrder(key, direction == "desc"), problems  # type: ignore[arg-type]


def parse_page(params: dict[str, str]) -> tuple[int, list[str]]:
    text = params.get("page", "").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        return 1, [f"page: {text!r} is not a page number (1, 2, ...); page 1 shown"]
    return int(text), []


def kept_params(params: dict[str, str]) -> dict[str, str]:
    """The filters and sort of the page, without the page number (for links and the form)."""
    keep = (*FILTER_PARAMS, "sort", "dir")
    return {k: params[k] for k in keep if params.get(k, "").strip()}


def page_url(params: dict[str, str], **changes: str | int | None) -> str:
    query = {**kept_params(params), **{k: str(v) for k, v in changes.items() if v is not None}}
    if query.get("page") == "1":
        del query["page"]
    return "/?" + urlencode(query) if query else "/"


def sort_headers(params: dict[str, str], order: WorklistOrder) -> dict[str, dict[str, str]]:
    """Per sortable column: its link (same filters, first page) and ``aria-sort``."""
    out: dict[str, dict[str, str]] = {}
    for key in SORT_KEYS:
        current = order.key == key
        reverse = "asc" if order.descending else "desc"  # a second click reverses
        direction = reverse if current else FIRST_DIRECTION[key]
        out[key] = {
            "href": page_url({**params, "sort": key, "dir": direction}),
            "aria": ("descending" if order.descending else "ascending") if current else "none",
            "arrow": ("▼" if order.descending else "▲") if current else "",
        }
    return out
