"""The ``watch`` command around :class:`~amaqc_client.watch.Watcher`: where the spool lives,
one watcher per spool (a lock file), log format, and stopping on SIGINT / SIGTERM."""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .api import ApiError, Client
from .files import BATCH_FILES
from .spool import Spool
from .watch import Watcher

logger = logging.getLogger("amaqc_client.watch")


def default_spool(export_dir: Path) -> Path:
    """``~/.amaqc-client/spool-<12 hex of the export folder's absolute path>``."""
    digest = hashlib.sha256(str(export_dir.resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".amaqc-client" / f"spool-{digest}"


class SpoolInUse(Exception):
    """Another watcher holds the spool."""


@contextmanager
def spool_lock(spool_dir: Path) -> Iterator[None]:
    """Hold ``spool_dir/lock`` while the block runs: two watchers on one spool would send the
    same series twice. (POSIX ``flock``; not taken where there is none, i.e. Windows.)"""
    spool_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (spool_dir / "lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolInUse(f"another amaqc watch is using the spool {spool_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _counts(spool_dir: Path) -> str:
    spool = Spool(spool_dir)
    try:
        return ", ".join(f"{n} {state}" for state, n in spool.counts().items()) or "empty"
    finally:
        spool.close()


def run_watch(
    export_dir: Path,
    *,
    url: str,
    key: str,
    quiet_seconds: float,
    spool_dir: Path | None,
    max_backoff: float,
    poll: float,
    scanner: str | None = None,
    batch_files: int = BATCH_FILES,
) -> int:
    """The ``watch`` command: runs until SIGINT or SIGTERM; returns the exit code (0, or 1
    when it cannot start)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # its warnings name file paths
    spool_dir = spool_dir or default_spool(export_dir)
    stop = threading.Event()
    try:
        with spool_lock(spool_dir), Client(url, key, scanner=scanner) as client:
            watcher = Watcher(
                export_dir,
                spool_dir,
                client,
                quiet_seconds=quiet_seconds,
                max_backoff=max_backoff,
                poll_seconds=poll,
                batch_files=batch_files,
            )
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            logger.info(
                "watching the export folder for %s (quiet %g s, spool %s)",
                url,
                quiet_seconds,
                spool_dir,
            )
            try:
                watcher.run(stop)
            finally:
                watcher.close()
    except (SpoolInUse, ApiError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("stopped; spool: %s", _counts(spool_dir))
    return 0
