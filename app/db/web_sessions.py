"""Web UI sign-in sessions (table ``web_session``), and the key changes that end them.

A session is a row found by the SHA-256 of the random token in the browser's cookie; the
token itself is never stored. A session is refused, and its row deleted, when it has been idle
for longer than ``idle_seconds``, is older than ``max_seconds``, its key is revoked, or its
key's role is not the one it signed in with. Signing out deletes the row. Revoking a key and
changing a key's role go through :func:`revoke_api_key` and :func:`set_api_key_role`, which
delete every session of the key in the same transaction. Expired rows are also pruned at each
sign-in, so rows of browsers that never come back do not pile up.

Functions flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from app.security import hash_key

from .models import ROLES, ApiKey, WebSession
from .types import utcnow

#: ``last_seen_at`` is written at most this often per session (or every tenth of the idle
#: lifetime, if that is shorter), so requests do not each cost a write
TOUCH_SECONDS = 60.0


def new_token() -> str:
    """A cookie value: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def start_session(
    session: Session, key: ApiKey, *, idle_seconds: float, max_seconds: float
) -> tuple[WebSession, str]:
    """A new session of ``key`` and its token (for the cookie; only its hash is stored).

    Deletes the expired sessions of every key first."""
    prune_sessions(session, idle_seconds=idle_seconds, max_seconds=max_seconds)
    token = new_token()
    now = utcnow()
    row = WebSession(
        token_hash=hash_key(token),
        key_id=key.id,
        role=key.role,
        csrf=secrets.token_urlsafe(24),
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    session.flush()
    return row, token


def _expired(row: WebSession, now: datetime, idle_seconds: float, max_seconds: float) -> bool:
    return now - row.last_seen_at > timedelta(seconds=idle_seconds) or (
        now - row.created_at > timedelta(seconds=max_seconds)
    )


def find_session(
    session: Session, token: str, *, idle_seconds: float, max_seconds: float
) -> tuple[ApiKey, WebSession] | None:
    """The key and session of ``token``; None (deleting the row) when the session is expired,
    its key revoked or its key's role changed. Records the request in ``last_seen_at``."""
    row = session.scalar(select(WebSession).where(WebSession.token_hash == hash_key(token)))
    if row is None:
        return None
    now = utcnow()
    key = session.get(ApiKey, row.key_id)
    if (
        key is None
        or key.revoked
        or key.role != row.role
        or _expired(row, now, idle_seconds, max_seconds)
    ):
        # a bulk DELETE: a concurrent request of the same session may have deleted it already
        session.execute(delete(WebSession).where(WebSession.id == row.id))
        return None
    if now - row.last_seen_at > timedelta(seconds=min(TOUCH_SECONDS, idle_seconds / 10)):
        row.last_seen_at = now
        session.flush()
    return key, row


def end_session(session: Session, token: str) -> bool:
    """Delete the session of ``token`` (sign-out); False when there was none."""
    result = session.execute(delete(WebSession).where(WebSession.token_hash == hash_key(token)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_sessions_of(session: Session, key_id: int) -> int:
    """Delete every session of the key ``key_id``; how many there were."""
    result = session.execute(delete(WebSession).where(WebSession.key_id == key_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_sessions(session: Session, key_id: int) -> int:
    """How many session rows the key ``key_id`` has (expired ones not yet pruned included)."""
    query = select(func.count(WebSession.id)).where(WebSession.key_id == key_id)
    return int(session.scalar(query) or 0)


def prune_sessions(session: Session, *, idle_seconds: float, max_seconds: float) -> int:
    """Delete every idle-expired or absolute-expired session; how many were deleted."""
    now = utcnow()
    result = session.execute(
        delete(WebSession).where(
            or_(
                WebSession.last_seen_at < now - timedelta(seconds=idle_seconds),
                WebSession.created_at < now - timedelta(seconds=max_seconds),
            )
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def revoke_api_key(session: Session, key: ApiKey) -> int:
    """Revoke ``key`` and end its sessions at once; how many sessions were ended."""
    key.revoked = True
    session.flush()
    return end_sessions_of(session, key.id)


def set_api_key_role(session: Session, key: ApiKey, role: str) -> int:
    """Give ``key`` the role ``role`` and end its sessions at once (a session keeps the rights
    it signed in with, so it must not outlive them); how many sessions were ended."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    key.role = role
    session.flush()
    return end_sessions_of(session, key.id)
