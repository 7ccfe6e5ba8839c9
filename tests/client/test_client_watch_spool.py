"""``watch`` without a server, on a clock the test sets: when a series becomes due, how the
retries back off, what the spool keeps across a restart, and what it copies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from amaqc_client.api import Accepted, ApiError, Client, SeriesState
from amaqc_client.run import SpoolInUse, spool_lock
from amaqc_client.watch import Watcher
from tests.utils.images import phantom, write_png8
from tests.utils.service import dicom_bytes

UID = "1.2.826.0.1.3680043.8.498.901"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A stand-in for the API that accepts every upload (or refuses with ``error``) and
    records what it got: what the watcher sends, not how the server stores it."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str | None, list[str]]] = []
        self.error: ApiError | None = None

    def upload(self, files: list[Path], **kw: object) -> Accepted:
        if self.error:
            raise self.error
        self.uploads.append((kw.get("series_uid"), [p.name for p in files]))
        return Accepted(
            series_id=len(self.uploads), status_url="/", new_instances=len(files), skipped=0
        )

    def series(self, series_id: int) -> SeriesState:
        if self.error:
            raise self.error
        return SeriesState(series_id, "done", label="clean", probability=0.1, flagged=0, slices=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    return folder


def write_series(folder: Path, n: int, uid: str = UID, start: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"IM{i:04d}"
        path.write_bytes(dicom_bytes(series_uid=uid, instance=i))
        paths.append(path)
    return paths


def watcher(export: Path, spool: Path, clock: Clock, client: object = None) -> Watcher:
    return Watcher(
        export,
        spool,
        cast(Client | None, client),
        quiet_seconds=10,
        base_backoff=1,
        max_backoff=8,
        clock=clock,
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_a_series_is_sent_once_its_files_stopped_changing_for_the_quiet_time(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    w = watcher(export, spool, clock, recorder)
    write_series(export / "a", 2)
    w.step()
    clock.now += 9
    write_series(export / "a", 1, start=3)  # a third slice: the series is still being written
    w.step()
    clock.now += 9  # 18 s after the first two, 9 s after the third
    w.step()
    assert recorder.uploads == []
    clock.now += 1
    w.step()
    assert len(recorder.uploads) == 1 and len(recorder.uploads[0][1]) == 3


def test_retries_back_off_exponentially_up_to_the_maximum(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    recorder.error = ApiError("down", transient=True)
    w = watcher(export, spool, clock, recorder)
    write_series(export / "a", 1)
    w.step()
    clock.now += 10
    waits = []
    for _ in range(6):
        w.step()
        row = w.spool.all_series()[0]
        waits.append(row.next_try - clock.now)
        clock.now = row.next_try
    assert waits == [1, 2, 4, 8, 8, 8]
    assert w.spool.all_series()[0].attempts == 6


def test_a_restart_resumes_the_spool_and_the_files_need_not_still_be_there(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    first = watcher(export, spool, clock)  # the server is down: nothing gets through
    files = write_series(export / "a", 2)
    first.step()
    clock.now += 10
    first.step()
    assert first.spool.counts() == {"pending": 1}
    first.close()
    for path in files:  # the scanner cleaned its export folder meanwhile
        path.unlink()
    second = watcher(export, spool, clock, recorder)
    clock.now += 60
    second.step()
    assert len(recorder.uploads) == 1 and len(recorder.uploads[0][1]) == 2
    assert second.spool.counts() == {"done": 1}
    assert list((spool / "objects").iterdir()) == []  # copies dropped once accepted


def test_nothing_is_sent_twice_and_only_new_files_follow(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    w = watcher(export, spool, clock, recorder)
    files = write_series(export / "a", 2)
    w.step()
    clock.now += 10
    w.step()
    files[0].write_bytes(files[0].read_bytes())  # rewritten, same bytes (a new mtime)
    os.utime(files[0], ns=(1, 1))
    (export / "copy").mkdir()
    (export / "copy" / "IM0001").write_bytes(files[0].read_bytes())  # the same slice again
    write_series(export / "a", 1, start=3)  # a late slice
    w.step()
    clock.now += 10
    w.step()
    clock.now += 10
    w.step()
    assert [len(names) for _, names in recorder.uploads] == [2, 1]


def test_png_slices_of_a_folder_are_one_series_with_a_uid_kept_in_the_spool(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    w = watcher(export, spool, clock, recorder)
    write_png8(export / "p" / "1.png", phantom(64, seed=1))
    write_png8(export / "p" / "2.png", phantom(64, seed=2))
    (export / "p" / "notes.txt").write_text("not an image")
    w.step()
    clock.now += 10
    w.step()
    write_png8(export / "p" / "3.png", phantom(64, seed=3))
    w.step()
    clock.now += 10
    w.step()
    (uid1, first), (uid2, second) = recorder.uploads
    assert uid1 == uid2 and uid1 is not None and uid1.startswith("2.25.")
    assert (len(first), len(second)) == (2, 1)


def test_a_refusal_for_good_is_not_tried_again(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    recorder.error = ApiError("422: not an image", status=422, transient=False)
    w = watcher(export, spool, clock, recorder)
    write_series(export / "a", 1)
    w.step()
    clock.now += 10
    w.step()
    recorder.error = None
    clock.now += 3600
    w.step()
    assert recorder.uploads == []
    assert w.spool.counts() == {"refused": 1}


def test_a_second_watcher_on_the_same_spool_is_refused(spool: Path) -> None:
    refused = pytest.raises(SpoolInUse, match="another amaqc watch is using the spool")
    with spool_lock(spool), refused, spool_lock(spool):
        pass
    with spool_lock(spool):  # free again once the first stopped
        pass


def test_a_file_rewritten_before_it_was_sent_goes_with_its_new_bytes_only(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    recorder.error = ApiError("down", transient=True)
    w = watcher(export, spool, clock, recorder)
    (path,) = write_series(export / "a", 1)
    w.step()
    clock.now += 10
    w.step()
    path.write_bytes(dicom_bytes(series_uid=UID, instance=7))  # other bytes, same path
    w.step()
    clock.now += 10
    recorder.error = None
    w.step()
    assert len(recorder.uploads) == 1 and len(recorder.uploads[0][1]) == 1
    assert list((spool / "objects").iterdir()) == []  # neither copy is left


def test_a_series_the_server_no_longer_knows_is_marked_failed(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    w = watcher(export, spool, clock, recorder)
    write_series(export / "a", 1)
    w.step()
    clock.now += 10
    recorder.error = None
    w.scan(clock.now)
    w.send_due(clock.now)
    recorder.error = ApiError("404: series 1 not found", status=404, transient=False)
    w.poll_verdicts(clock.now)
    (row,) = w.spool.all_series()
    assert row.state == "failed" and "404" in (row.error or "")


def test_a_big_series_goes_in_several_uploads_to_the_same_series(
    export: Path, spool: Path, clock: Clock, recorder: Recorder
) -> None:
    w = Watcher(export, spool, cast(Client, recorder), quiet_seconds=10, batch_files=2, clock=clock)
    write_series(export / "a", 5)
    w.step()
    clock.now += 10
    for _ in range(3):
        w.step()
    assert [len(names) for _, names in recorder.uploads] == [2, 2, 1]
    assert w.spool.counts() == {"done": 1}
