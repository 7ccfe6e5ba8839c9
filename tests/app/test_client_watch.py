"""``watch`` against a live server (the API over real HTTP, a real worker, SQLite + the local
broker): the server goes down while series arrive, the watcher restarts on its spool, the
server comes back on the same URL, and every series is stored once with every slice, while no
log line carries the patient's name or ID."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select

from amaqc_client.api import Client
from amaqc_client.watch import Watcher
from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import session_scope
from app.supervise import die_with_parent
from tests.app.conftest import backend_settings, new_key
from tests.utils.images import phantom, write_png8
from tests.utils.live import live_api
from tests.utils.ports import free_port
from tests.utils.service import dicom_bytes, start_worker, stop_process

#: what tests/utils/images.dicom_dataset writes into every DICOM file
PATIENT = ("Doe^Jane", "Doe", "PID-SECRET-42")
#: the export folder is named after the patient, as some scanners do
FOLDER = "Doe^Jane_PID-SECRET-42"


@pytest.fixture
def service(tmp_path: Path, checkpoint: Path) -> Iterator[Settings]:
    with backend_settings("sqlite", tmp_path / "data", checkpoint) as settings:
        worker = start_worker(settings)
        try:
            yield settings
        finally:
            stop_process(worker)


def write_series(folder: Path, uid: str, numbers: range) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in numbers:
        (folder / f"IM{i:04d}").write_bytes(dicom_bytes(series_uid=uid, instance=i))


def stored(settings: Settings) -> dict[str, int]:
    """Series UID -> instances stored for it."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Series.series_uid, func.count(Instance.id))
            .join(Instance, Instance.series_id == Series.id)
            .group_by(Series.series_uid)
        ).all()
    return {uid: int(n) for uid, n in rows}


def step_until(
    watchers: Watcher, done: Callable[[], bool], what: str, seconds: float = 120
) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            counts = watchers.spool.counts()
            raise AssertionError(f"{what}: not within {seconds:g} s (spool: {counts})")
        watchers.step()
        time.sleep(0.1)


def states(w: Watcher) -> dict[str, str]:
    return {row.key: row.state for row in w.spool.all_series()}


@pytest.mark.slow
def test_the_spool_survives_a_server_outage_and_a_restart_with_nothing_lost_or_doubled(
    service: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="amaqc_client")
    export, spool, port = tmp_path / "export" / FOLDER, tmp_path / "spool", free_port()
    export.mkdir(parents=True)
    key = new_key(service, "scanner", "mr1")
    a, b = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"
    settings = {"quiet_seconds": 0.3, "base_backoff": 0.2, "max_backoff": 1.0, "poll_seconds": 0.2}
    client = Client(f"http://127.0.0.1:{port}", key)  # one client across the outage
    with ExitStack() as stack:
        stack.enter_context(live_api(service, port))
        first = Watcher(export.parent, spool, client, **settings)
        write_series(export / "a", a, range(1, 4))
        step_until(first, lambda: states(first) == {f"dicom:{a}": "done"}, "series a's verdict")
        stack.close()  # the server goes down

        write_series(export / "b", b, range(1, 3))  # a new series ...
        write_series(export / "a", a, range(4, 5))  # ... and a late slice of the first
        for i in range(2):
            write_png8(export / "png" / f"{i}.png", phantom(64, seed=70 + i))

        def tried_twice() -> bool:
            rows = first.spool.all_series("pending")
            return len(rows) == 3 and all(r.attempts >= 2 for r in rows)

        step_until(first, tried_twice, "three series tried while the server is down")
        first.close()  # the watcher stops (a restart) with all three in its spool
        for path in (export / "b").iterdir():
            path.unlink()  # and the scanner cleans up what it exported

    with live_api(service, port), client:  # back, on the same URL
        second = Watcher(export.parent, spool, client, **settings)
        step_until(
            second,
            lambda: set(states(second).values()) == {"done"} and len(states(second)) == 3,
            "every series' verdict after the server came back",
        )
        sends = {row.key: row.sends for row in second.spool.all_series()}
        second.close()

    counts = stored(service)
    assert counts[a] == 4 and counts[b] == 2  # nothing lost: the late slice, b's deleted files
    assert sorted(counts.values()) == [2, 2, 4]  # and the PNG series; no series twice
    assert sends == {f"dicom:{a}": 2, f"dicom:{b}": 1, f"dir:{FOLDER}/png": 1}
    log = caplog.text
    assert "sent 3 files" in log and "sent 2 files" in log and "slices flagged" in log
    for word in (*PATIENT, FOLDER, a, b):
        assert word not in log, f"{word!r} logged"


def start_watch(
    export: Path, url: str, key: str, spool: Path, log: Path
) -> subprocess.Popen[bytes]:
    """``python -m amaqc_client watch`` (the light package's command) logging to ``log``."""
    quick = ["--quiet-seconds", "0.5", "--poll", "0.2", "--max-backoff", "1", "--spool", str(spool)]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "amaqc_client", "watch", str(export), "--url", url, *quick],
            env={"AMAQC_API_KEY": key, "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent,
        )


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, words: str) -> None:
    deadline = time.monotonic() + 120
    while words not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {words!r} within 120 s:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.mark.slow
def test_amaqc_watch_killed_while_the_server_is_down_resumes_its_spool_and_logs_no_patient(
    service: Settings, tmp_path: Path
) -> None:
    export, spool, port = tmp_path / "export", tmp_path / "spool", free_port()
    uid = "1.2.826.0.1.3680043.8.498.73"
    write_series(export / FOLDER, uid, range(1, 3))
    key = new_key(service, "scanner", "mr1")
    url = f"http://127.0.0.1:{port}"  # nothing listens there yet
    first_log, second_log = tmp_path / "watch-1.log", tmp_path / "watch-2.log"
    first = start_watch(export, url, key, spool, first_log)
    try:
        wait_for_line(first, first_log, "not sent (try 2)")
    finally:
        first.kill()  # a crash: no clean shutdown
        first.wait()
    for path in (export / FOLDER).iterdir():
        path.unlink()  # the scanner cleaned its export folder meanwhile
    with live_api(service, port):
        second = start_watch(export, url, key, spool, second_log)
        try:
            wait_for_line(second, second_log, "slices flagged")
        finally:
            second.send_signal(signal.SIGTERM)
            code = second.wait(timeout=30)
    text = second_log.read_text()
    assert code == 0, text
    assert "spool resumed: 1 pending" in text and "sent 2 files" in text
    assert "stopped; spool: 1 done" in text
    assert stored(service) == {uid: 2}
    for word in (*PATIENT, FOLDER, uid, key):
        assert word not in first_log.read_text() + text, f"{word!r} logged"
