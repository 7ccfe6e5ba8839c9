"""``watch``: post each series of an export folder once its files stop changing.

One :meth:`Watcher.step` does three things, each committed to the spool before the next:

1. **scan**: stat every file; a new or changed file is (re)noted with the time it changed; a
   file unchanged for ``quiet_seconds`` is classified, hashed and copied into the spool. Its
   series becomes due once no file in the same folders is still changing.
2. **send**: each due series posts its spooled files (under neutral names: ``<sha256>.<ext>``),
   those the server does not have yet by content hash; on success the files are ``sent``.
   A failure the server may get over (unreachable, 5xx, a refused key) is tried again after
   1, 2, 4, ... seconds up to ``max_backoff``; once one series gets through, the others are
   tried at once. A refusal that will not change (422: not an image) is logged and kept.
3. **verdicts**: sent series are polled until done, and their verdict is logged.

Nothing is sent twice: a file's content is sent once per series (its SHA-256 is in the spool;
a rewrite with the same bytes is not sent again), and the server does not duplicate a re-sent
instance either (same SOPInstanceUID or bytes; a made series UID is kept in the spool), which
covers a watcher killed between the server's answer and the spool's commit.

Logs name series by a short hash of their key, their description and counts: never a path, a
file name or anything of the patient.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .api import ApiError, Client, SeriesState
from .files import (
    BATCH_FILES,
    FileInfo,
    UnreadableFile,
    batches,
    classify,
    group_key,
    label,
    made_uid,
    walk,
)
from .spool import SeriesRow, Spool

logger = logging.getLogger("amaqc_client.watch")

_EXT = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "nifti": ".nii", "zip": ".zip"}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def tag(key: str) -> str:
    """A series' name in logs: 10 hex of its key (a UID or a path is never logged)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


class Watcher:
    """Watch ``export_dir`` with the spool in ``spool_dir``; ``client`` makes the API calls
    (None: every send fails as if the server were down); at most ``batch_files`` files go in
    one upload; ``clock`` gives seconds since the epoch (the spool keeps wall times, so a
    restart keeps the quiet times and backoffs)."""

    def __init__(
        self,
        export_dir: Path,
        spool_dir: Path,
        client: Client | None,
        *,
        quiet_seconds: float = 10.0,
        base_backoff: float = 1.0,
        max_backoff: float = 300.0,
        poll_seconds: float = 1.0,
        batch_files: int = BATCH_FILES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not export_dir.is_dir():
            raise ValueError(f"export folder {export_dir} is not a folder")
        self.export_dir = export_dir.resolve()
        self.spool = Spool(spool_dir)
        self.client = client
        self.quiet = quiet_seconds
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.poll_seconds = poll_seconds
        self.batch_files = batch_files
        self.clock = clock

    def close(self) -> None:
        self.spool.close()

    def step(self) -> None:
        """Scan, send what is due, poll verdicts."""
        now = self.clock()
        self.scan(now)
        self.send_due(now)
        self.poll_verdicts(now)

    # -- 1. scan ----------------------------------------------------------------------------

    def scan(self, now: float) -> None:
        seen = self.spool.seen()
        present, changed = set(), []
        for path in walk([self.export_dir]):
            try:
                st = path.stat()
            except OSError:
                continue  # gone between listing and stat
            name = str(path)
            present.add(name)
            known = seen.get(name)
            if known is None or known[:2] != (st.st_size, st.st_mtime_ns):
                changed.append((name, st.st_size, st.st_mtime_ns, now))
        gone = [(n,) for n, (_, _, state) in seen.items() if state == "new" and n not in present]
        with self.spool.transaction() as db:  # one commit per scan, however many files came
            db.executemany(
                "INSERT INTO files (path, size, mtime_ns, changed_at) VALUES (?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = "
                "excluded.mtime_ns, changed_at = excluded.changed_at, state = 'new'",
                changed,
            )
            db.executemany("DELETE FROM files WHERE path = ?", gone)  # temporary files
        quiet = self.spool.db.execute(
            "SELECT id, path FROM files WHERE state = 'new' AND changed_at <= ? ORDER BY id",
            (now - self.quiet,),
        ).fetchall()
        for row in quiet:
            self._spool_file(row["id"], Path(row["path"]))

    def _spool_file(self, file_id: int, path: Path) -> None:
        """Classify a file that stopped changing, copy it into the spool, add it to its
        series (or mark it ignored / unreadable)."""
        before = self.spool.db.execute("SELECT sha256 FROM files WHERE id = ?", (file_id,))
        old_sha = before.fetchone()["sha256"]  # of a spooled file that changed since
        try:
            self._classify_and_spool(file_id, path)
        finally:
            if old_sha:
                self._drop_copy(old_sha)

    def _classify_and_spool(self, file_id: int, path: Path) -> None:
        try:
            info = classify(path)
            sha = self._copy(path, info) if info else None
        except (UnreadableFile, OSError) as exc:
            reason = exc.reason if isinstance(exc, UnreadableFile) else "cannot read it"
            logger.warning("file %d of the spool is unreadable: %s", file_id, reason)
            with self.spool.transaction() as db:
                db.execute(
                    "UPDATE files SET state = 'unreadable', reason = ? WHERE id = ?",
                    (reason, file_id),
                )
            return
        if info is None or sha is None:
            with self.spool.transaction() as db:
                db.execute("UPDATE files SET state = 'ignored' WHERE id = ?", (file_id,))
            return
        key = group_key(info, self.export_dir)
        with self.spool.transaction() as db:
            already = db.execute(
                "SELECT 1 FROM sent WHERE series_key = ? AND sha256 = ?", (key, sha)
            ).fetchone()
            db.execute(
                "UPDATE files SET state = ?, kind = ?, sha256 = ?, series_key = ? WHERE id = ?",
                ("sent" if already else "spooled", info.kind, sha, key, file_id),
            )
            uid = None if info.kind == "zip" or key.startswith("dicom:") else made_uid(key + sha)
            db.execute(
                "INSERT INTO series (key, series_uid, label, kind) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO NOTHING",
                (key, uid, label(info), info.kind),
            )
            if not already:
                db.execute(
                    "UPDATE series SET state = 'pending' WHERE key = ? AND state IN "
                    "('waiting', 'done', 'failed')",
                    (key,),
                )
        if already:
            self._drop_copy(sha)

    def _copy(self, path: Path, info: FileInfo) -> str:
        """Copy ``path`` into the spool's objects, named by the SHA-256 of what was copied."""
        tmp = self.spool.objects / f".incoming-{os.getpid()}"
        digest = hashlib.sha256()
        with path.open("rb") as src, tmp.open("wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        sha = digest.hexdigest()
        os.replace(tmp, self.spool.object_path(sha))
        return sha

    def _drop_copy(self, sha: str) -> None:
        still = self.spool.db.execute(
            "SELECT 1 FROM files WHERE sha256 = ? AND state = 'spooled'", (sha,)
        ).fetchone()
        if not still:
            self.spool.object_path(sha).unlink(missing_ok=True)

    # -- 2. send ----------------------------------------------------------------------------

    def _due(self, now: float) -> list[SeriesRow]:
        """Pending series whose retry time came and whose folders hold no changing file."""
        busy_dirs = {
            str(Path(r["path"]).parent)
            for r in self.spool.db.execute("SELECT path FROM files WHERE state = 'new'")
        }
        due = []
        for row in self.spool.all_series("pending"):
            if row.next_try > now:
                continue
            dirs = {
                str(Path(r["path"]).parent)
                for r in self.spool.db.execute(
                    "SELECT path FROM files WHERE series_key = ? AND state = 'spooled'",
                    (row.key,),
                )
            }
            if dirs and not dirs & busy_dirs:
                due.append(row)
        return due

    def send_due(self, now: float) -> None:
        for row in self._due(now):
            if not self._send(row, now):
                return  # the server is down or refuses the key: the others wait their turn

    def _send(self, row: SeriesRow, now: float) -> bool:
        files = self.spool.spooled_files(row.key)
        paths = [self.spool.object_path(sha) for _, sha, _ in files]
        sizes = {p: _size(p) for p in paths}
        first = batches(paths, sizes, max_files=self.batch_files)[0]  # a big series in parts
        files, paths = files[: len(first)], first
        names = [f"{sha[:32]}{_EXT[kind]}" for _, sha, kind in files]
        try:
            if self.client is None:
                raise ApiError("no server configured", transient=True)
            accepted = self.client.upload(
                paths, series_uid=row.series_uid, kinds=[k for *_, k in files], names=names
            )
        except ApiError as exc:
            return self._failed(row, now, exc)
        with self.spool.transaction() as db:
            shas = [sha for _, sha, _ in files]
            marks = ",".join("?" * len(shas))
            db.execute(
                f"UPDATE files SET state = 'sent' WHERE series_key = ? AND state = 'spooled' "
                f"AND sha256 IN ({marks})",
                (row.key, *shas),
            )
            db.executemany(
                "INSERT OR IGNORE INTO sent (series_key, sha256) VALUES (?, ?)",
                [(row.key, sha) for sha in shas],
            )
            more = db.execute(
                "SELECT 1 FROM files WHERE series_key = ? AND state = 'spooled' LIMIT 1",
                (row.key,),
            ).fetchone()
            db.execute(
                "UPDATE series SET state = ?, server_id = ?, attempts = 0, next_try = ?, "
                "error = NULL, sends = sends + 1 WHERE key = ?",
                ("pending" if more else "waiting", accepted.series_id, now, row.key),
            )
            if row.attempts:  # the server is back: the others need not wait out their backoff
                db.execute("UPDATE series SET next_try = 0 WHERE state = 'pending'")
        for sha in shas:
            self._drop_copy(sha)
        logger.info(
            "series %s (%s): sent %d files, %d new on the server (server series %d)",
            tag(row.key),
            row.label,
            len(files),
            accepted.new_instances,
            accepted.series_id,
        )
        return True

    def _failed(self, row: SeriesRow, now: float, exc: ApiError) -> bool:
        if not exc.transient:
            logger.error("series %s (%s): refused for good: %s", tag(row.key), row.label, exc)
            with self.spool.transaction() as db:
                db.execute(
                    "UPDATE series SET state = 'refused', error = ? WHERE key = ?",
                    (str(exc), row.key),
                )
            return True
        wait = min(self.max_backoff, self.base_backoff * 2**row.attempts)
        logger.warning(
            "series %s (%s): not sent (try %d), next try in %.0f s: %s",
            tag(row.key),
            row.label,
            row.attempts + 1,
            wait,
            exc,
        )
        with self.spool.transaction() as db:
            db.execute(
                "UPDATE series SET attempts = attempts + 1, next_try = ?, error = ? WHERE key = ?",
                (now + wait, str(exc), row.key),
            )
        return False

    # -- 3. verdicts ------------------------------------------------------------------------

    def poll_verdicts(self, now: float) -> None:
        if self.client is None:
            return
        for row in self.spool.all_series("waiting"):
            if row.next_try > now or row.server_id is None:
                continue
            try:
                state = self.client.series(row.server_id)
            except ApiError as exc:
                if exc.transient:
                    return  # the server went away again: next step
                state = SeriesState(row.server_id, "failed", error=str(exc))  # e.g. 404
            if not state.finished:
                with self.spool.transaction() as db:
                    db.execute(
                        "UPDATE series SET next_try = ? WHERE key = ?",
                        (now + self.poll_seconds, row.key),
                    )
                continue
            if state.status == "failed":
                logger.warning(
                    "series %s (%s): server series %d failed: %s",
                    tag(row.key),
                    row.label,
                    row.server_id,
                    state.error,
                )
            else:
                logger.info(
                    "series %s (%s): %s, probability %.3f, %s of %d slices flagged "
                    "(server series %d)",
                    tag(row.key),
                    row.label,
                    state.label,
                    state.probability or 0.0,
                    state.flagged,
                    state.slices,
                    row.server_id,
                )
            with self.spool.transaction() as db:
                db.execute(
                    "UPDATE series SET state = ?, verdict = ?, probability = ?, error = ? "
                    "WHERE key = ? AND state = 'waiting'",
                    (
                        "failed" if state.status == "failed" else "done",
                        state.label,
                        state.probability,
                        state.error,
                        row.key,
                    ),
                )

    def run(self, stop: threading.Event) -> None:
        """Step every ``poll_seconds`` until ``stop`` is set."""
        counts = self.spool.counts()
        if counts:
            logger.info("spool resumed: %s", ", ".join(f"{n} {s}" for s, n in counts.items()))
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # a bug or a full disk must not end the watch silently
                logger.exception("watch step failed; trying again")
            stop.wait(self.poll_seconds)
