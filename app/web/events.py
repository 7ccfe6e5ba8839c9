"""``GET /worklist/events``: the worklist's server-sent events.

The API process polls the database every ``events_poll_seconds`` (the same on SQLite and
PostgreSQL, whichever process wrote the row): a series, verdict or review row newer than the
stream's watermark (or committed late below it: ``reviews.ChangeFeed``), or a status change of a
series still in progress, sends that series' row as rendered HTML (``upsert``) when it matches
the page's filters, else ``remove``. Each event carries the watermark as its id, so a
reconnecting browser (``Last-Event-ID``) picks up from there.
A stream ends after ``STREAM_SECONDS``; the browser reconnects by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, SettingsDep, signed_in
from app.config import Settings
from app.db import reviews
from app.db.reviews import Watermark, WorklistFilter
from app.db.session import new_session

from .worklist_view import parse_filters, render_row

router = APIRouter(include_in_schema=False)
STREAM_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0


def _signed_in_role(request: Request, session: SessionDep, settings: SettingsDep) -> str:
    """The role of the signed-in key (radiographer or admin); 401 when nobody is."""
    found = signed_in(request, session, settings)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in at /login first")
    return found[0].role


def _event(kind: str, data: dict[str, object], mark: Watermark) -> str:
    return f"id: {mark}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


class WorklistPoller:
    """The state of one stream: its watermark and the unfinished series' statuses."""

    def __init__(
        self,
        settings: Settings,
        filters: WorklistFilter,
        mark: Watermark | None,
        role: str = "radiographer",
    ):
        self.settings = settings
        self.filters = filters
        self.role = role  # rows carry patient context for the roles that may see it
        with new_session(settings.database_url) as session:
            self.feed = reviews.ChangeFeed(session, mark)
            self.pending = reviews.unfinished(session)

    @property
    def mark(self) -> Watermark:
        return self.feed.mark

    def poll(self) -> list[str]:
        """Events for what changed since the last poll."""
        with new_session(self.settings.database_url) as session:
            changed = self.feed.poll(session)
            now = reviews.unfinished(session)
            changed |= {i for i, s in self.pending.items() if now.get(i) != s}
            changed |= set(now) - set(self.pending)
            self.pending = now
            if not changed:
                return []
            rows, _ = reviews.worklist(session, self.filters, limit=len(changed), ids=changed)
            events = [
                _event("upsert", {"id": r.series.id, "html": self._html(r)}, self.mark)
                for r in sorted(rows, key=lambda r: r.series.id)
            ]
        shown = {r.series.id for r in rows}
        events += [_event("remove", {"id": i}, self.mark) for i in sorted(changed - shown)]
        return events

    def _html(self, row: reviews.WorklistRow) -> str:
        return render_row(row, role=self.role, hide_names=self.settings.hide_patient_names)


async def _stream(request: Request, poller: WorklistPoller, every: float) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    started = last_sent = time.monotonic()
    while time.monotonic() - started < STREAM_SECONDS:
        await anyio.sleep(every)
        if await request.is_disconnected():
            return
        events = await run_in_threadpool(poller.poll)
        for event in events:
            yield event
        if events:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()


@router.get("/worklist/events")
def worklist_events(
    request: Request,
    settings: SettingsDep,
    role: Annotated[str, Depends(_signed_in_role)],
    since: str = "",
    last_event_id: Annotated[str, Header()] = "",
) -> StreamingResponse:
    """Worklist rows that changed, as server-sent events (same filters as ``/``)."""
    filters, _ = parse_filters(dict(request.query_params))
    mark = Watermark.parse(last_event_id) or Watermark.parse(since)
    poller = WorklistPoller(settings, filters, mark, role)
    return StreamingResponse(
        _stream(request, poller, settings.events_poll_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
