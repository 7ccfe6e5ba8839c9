"""A full disk (issue 20): an upload that finds no room is a 507 with a JSON detail, and nothing
of it is half written -- no rows, no partial file in the store, no temporary folder left -- and
the same upload goes through once there is room again.

Real ENOSPC from the kernel, nothing monkeypatched: a small tmpfs mounted as the data dir when
the tests run as root (CI does), else skipped; and, on any machine, the store's temporary file
for one known upload made a symbolic link to ``/dev/full`` (every write to it fails ENOSPC).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from tests.app.conftest import app_client, auth, make_settings, new_key
from tests.utils.dicomweb import stow_body, stow_headers
from tests.utils.service import dicom_bytes

UID = "1.2.826.0.1.3680043.8.498.507"


def _rows(settings: Settings) -> tuple[int, int]:
    with session_scope(settings.database_url) as session:
        series = session.scalar(select(func.count()).select_from(Series)) or 0
        instances = session.scalar(select(func.count()).select_from(Instance)) or 0
    return series, instances


def _nothing_half_written(settings: Settings) -> None:
    """Every file in the store is complete (its bytes hash to its name); no temporary file is
    left in the store, and no upload folder under ``<data_dir>/tmp``."""
    for path in settings.storage_dir.rglob("*"):
        if path.is_file() or path.is_symlink():
            assert not path.name.startswith("."), f"left behind: {path}"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0]
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())


def _series(n: int, uid: str = UID) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"s{i}.dcm", dicom_bytes(series_uid=uid, instance=i + 1), "application/dicom"))
        for i in range(n)
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_store_that_cannot_be_written_is_a_507_and_nothing_is_half_written(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    files = _series(3)
    data = files[1][1][1]
    sha = hashlib.sha256(data).hexdigest()
    folder = settings.storage_dir / sha[:2]
    folder.mkdir(parents=True)
    trap = folder / f".{sha}.dcm.{os.getpid()}.tmp"  # the API runs in this process
    trap.symlink_to("/dev/full")
    before = _rows(settings)

    r = client.post("/api/v1/series", files=files, headers=scanner)

    assert r.status_code == 507 and "storage is full" in r.json()["detail"], r.text
    assert _rows(settings) == before
    assert not trap.exists() and not trap.is_symlink() and not (folder / f"{sha}.dcm").exists()
    _nothing_half_written(settings)
    again = client.post("/api/v1/series", files=files, headers=scanner)
    assert again.status_code == 202 and again.json()["new_instances"] == 3


@pytest.fixture
def small_disk(tmp_path: Path, checkpoint: Path) -> Iterator[tuple[TestClient, Settings, Path]]:
    """The data dir on a 1 MiB tmpfs (the database beside it, on the ordinary disk), a filler
    file on it; yields an API client, the settings and the filler."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        settings = make_settings(
            mount, checkpoint, database_url=f"sqlite:///{tmp_path / 'amaqc.db'}"
        )
        upgrade(settings.database_url)
        with session_scope(settings.database_url) as session:
            register_checkpoint(session, checkpoint)
        with app_client(settings) as client:
            yield client, settings, mount / "filler"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _leave_free(filler: Path, free: int) -> None:
    """Fill the disk of ``filler`` to the last byte, then give back ``free`` bytes."""
    with filler.open("ab", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    stat = os.statvfs(filler.parent)
    assert stat.f_bavail * stat.f_frsize < 4096
    os.truncate(filler, max(filler.stat().st_size - free, 0))


@pytest.mark.parametrize(
    ("free", "where"),
    [(16 * 1024, "receiving the upload"), (48 * 1024, "storing the originals")],
)
def test_a_full_data_disk_is_a_507_then_the_same_upload_goes_through(
    small_disk: tuple[TestClient, Settings, Path], free: int, where: str
) -> None:
    """Four 8.5 kB slices: 16 kB free fails while the upload is copied in, 48 kB once it is
    copied, while the originals are stored."""
    client, settings, filler = small_disk
    scanner = auth(new_key(settings, "scanner", "mr1"))
    files = _series(4)
    _leave_free(filler, free)

    r = client.post("/api/v1/series", files=files, headers=scanner)

    assert r.status_code == 507 and r.headers["content-type"] == "application/json", (where, r)
    assert "storage is full" in r.json()["detail"]
    assert _rows(settings) == (0, 0), where
    _nothing_half_written(settings)
    filler.unlink()
    again = client.post("/api/v1/series", files=files, headers=scanner)
    assert again.status_code == 202 and again.json()["new_instances"] == 4
    assert _rows(settings) == (1, 4)
    _nothing_half_written(settings)


def test_a_full_data_disk_refuses_a_stow_request_with_a_507(
    small_disk: tuple[TestClient, Settings, Path],
) -> None:
    """STOW-RS: parts that find no room while they are received are a 507 for the request
    (a part that finds no room in the store is refused alone, 0xA700, as before)."""
    client, settings, filler = small_disk
    headers = stow_headers(auth(new_key(settings, "scanner", "pacs")))
    body = stow_body([data for _, (_, data, _) in _series(4, UID + ".1")])
    _leave_free(filler, 16 * 1024)

    r = client.post("/dicomweb/studies", content=body, headers=headers)

    assert r.status_code == 507 and "storage is full" in r.json()["detail"], r.text
    assert _rows(settings) == (0, 0)
    _nothing_half_written(settings)
    filler.unlink()
    assert client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    assert _rows(settings) == (1, 4)


@pytest.mark.parametrize("free", [4 * 1024, 12 * 1024])
def test_a_full_data_disk_refuses_a_c_store_with_out_of_resources(
    small_disk: tuple[TestClient, Settings, Path], free: int
) -> None:
    """The DICOM listener (what it answers for one received instance): 0xA700 with an Error
    Comment, nothing stored; Success once there is room. 4 kB free: no room for the received
    instance; 12 kB: received, no room in the store."""
    from app.dicom_listener import listener_key_id, receive_instance
    from app.dicomweb.validate import FailureReason

    _, settings, filler = small_disk
    key_id = listener_key_id(settings)
    data = dicom_bytes(series_uid=UID + ".2", instance=1)
    _leave_free(filler, free)

    got = receive_instance(settings, key_id, data)

    answer = got.response()  # the C-STORE response: Status and Error Comment
    assert (answer.Status, answer.ErrorComment) == (
        FailureReason.OUT_OF_RESOURCES,
        "the server could not store it; try again later",
    )
    assert _rows(settings) == (0, 0)
    _nothing_half_written(settings)
    filler.unlink()
    assert receive_instance(settings, key_id, data).status == 0  # Success
    assert _rows(settings) == (1, 1)
