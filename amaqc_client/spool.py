"""The watch spool: what ``watch`` has seen, copied and sent, in one SQLite file on disk.

Every change is one transaction (``synchronous=FULL``), so a watcher killed at any moment
resumes from the last committed state. A file is copied into ``objects/`` (named by its
SHA-256) once it stopped changing, and sent from that copy: the scanner may delete or
overwrite its export, the spool still has what is owed to the server. Copies are deleted once
the server accepted them.

``files``: one row per path seen (``new`` -> ``spooled`` -> ``sent``, or ``ignored`` /
``unreadable``). ``sent``: every (series, SHA-256) the server accepted, kept when the file
row changes or goes. ``series``: one row per series (``pending`` while files wait to be sent,
``waiting`` for the verdict, then ``done`` / ``failed``; ``refused`` when the server refused
the upload for good), with its tries and the time of the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    kind TEXT,
    sha256 TEXT,
    series_key TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE INDEX IF NOT EXISTS files_series ON files (series_key, sha256);
CREATE TABLE IF NOT EXISTS sent (
    series_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (series_key, sha256)
);
CREATE TABLE IF NOT EXISTS series (
    key TEXT PRIMARY KEY,
    series_uid TEXT,
    label TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    server_id INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    error TEXT,
    verdict TEXT,
    probability REAL,
    sends INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class SeriesRow:
    key: str
    series_uid: str | None
    label: str
    kind: str
    state: str
    server_id: int | None
    attempts: int
    next_try: float
    error: str | None
    verdict: str | None
    probability: float | None
    sends: int


class Spool:
    """The spool folder: ``spool.db`` and ``objects/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.objects = folder / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "spool.db", isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- files ------------------------------------------------------------------------------

    def seen(self) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, state) of every file row."""
        rows = self.db.execute("SELECT path, size, mtime_ns, state FROM files")
        return {r["path"]: (r["size"], r["mtime_ns"], r["state"]) for r in rows}

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256

    def series(self, key: str) -> SeriesRow | None:
        row = self.db.execute("SELECT * FROM series WHERE key = ?", (key,)).fetchone()
        return SeriesRow(**dict(row)) if row else None

    def all_series(self, *states: str) -> list[SeriesRow]:
        marks = ",".join("?" * len(states))
        where = f"WHERE state IN ({marks})" if states else ""
        rows = self.db.execute(f"SELECT * FROM series {where} ORDER BY rowid", states)
        return [SeriesRow(**dict(r)) for r in rows]

    def spooled_files(self, key: str) -> list[tuple[int, str, str]]:
        """(file id, sha256, kind) of a series' files waiting to be sent, one per content."""
        rows = self.db.execute(
            "SELECT MIN(id) AS id, sha256, kind FROM files WHERE series_key = ? AND "
            "state = 'spooled' GROUP BY sha256 ORDER BY MIN(id)",
            (key,),
        )
        return [(r["id"], r["sha256"], r["kind"]) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many series are in each state."""
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM series GROUP BY state")
        return {r["state"]: r["n"] for r in rows}
