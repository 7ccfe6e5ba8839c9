"""Notify (DESIGN.md data flow, step 3): a series verdict is pushed to a webhook at once.

The worker enqueues :func:`app.worker.tasks.notify_series` after it writes a series verdict;
that task calls :func:`notify_series` here, which builds the event from the database (the
source of truth) and POSTs it as JSON. A receiver that is down or answers 5xx/429 gets the event
again later (Celery retries with backoff); ``event_id`` is the same on every attempt, so a
receiver can drop duplicates. The body carries ids, the verdict and links, never a patient
identifier. With ``AMAQC_WEBHOOK_SECRET`` set, ``X-Amaqc-Signature: sha256=<hex>`` is the
HMAC-SHA256 of the exact body bytes (verify it before trusting the event).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from app.config import Settings
from app.db import repo
from app.db.session import session_scope

logger = logging.getLogger(__name__)

USER_AGENT = "amaqc-webhook/1"


class DeliveryFailed(Exception):
    """The receiver was unreachable or answered 429/5xx: worth another attempt."""


def series_event(settings: Settings, series_id: int) -> dict[str, Any] | None:
    """The ``series.verdict`` event of the series' newest verdict (None when it has none)."""
    with session_scope(settings.database_url) as session:
        series = repo.get_series(session, series_id)
        verdict = repo.series_verdict(session, series_id) if series else None
        if series is None or verdict is None:
            return None
        version = repo.model_version(session, verdict.model_version_id)
        body = {
            "series_id": series.id,
            "series_uid": series.series_uid,
            "protocol": series.protocol,
            "scanner": series.scanner,
            "label": "artifact" if verdict.label else "clean",
            "probability": verdict.probability,
            "flagged_slices": list(verdict.flagged),
            "flagged_count": verdict.flagged_count,
            "slices": len(repo.series_instances(session, series.id)),
            "rule": verdict.rule,
            "threshold": verdict.threshold,
            "threshold_source": verdict.threshold_source,
            "model_version": {"id": version.id, "name": version.name} if version else None,
            "status_url": f"/api/v1/series/{series.id}",
        }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {"event": "series.verdict", "event_id": f"series-{series_id}-{digest}", **body}


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_event(settings: Settings, event: dict[str, Any]) -> int:
    """POST ``event``; returns the HTTP status. Raises :class:`DeliveryFailed` when retrying
    may help (connection error, timeout, 429, 5xx); a 4xx other than 429 is final."""
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if settings.webhook_secret:
        headers["X-Amaqc-Signature"] = sign(body, settings.webhook_secret)
    request = urllib.request.Request(settings.webhook_url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=settings.webhook_timeout_seconds) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise DeliveryFailed(f"webhook answered {exc.code}") from None
        return int(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryFailed(f"webhook unreachable: {exc}") from None


def notify_series(settings: Settings, series_id: int) -> str:
    """Send the series' verdict event if the settings ask for it; returns what happened."""
    if not settings.webhook_url:
        return "no webhook"
    event = series_event(settings, series_id)
    if event is None:
        return "no verdict"
    if settings.webhook_events == "flagged" and event["label"] != "artifact":
        return "not flagged"
    status = post_event(settings, event)
    if status >= 400:
        logger.warning("webhook refused event %s with HTTP %s", event["event_id"], status)
        return f"refused ({status})"
    logger.info("webhook took event %s (HTTP %s)", event["event_id"], status)
    return "sent"
