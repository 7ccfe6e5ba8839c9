"""``amaqc send`` against a live server: the API over real HTTP (uvicorn) and a real Celery
worker on SQLite + the local broker; the verdicts, the exit codes scripts branch on, and the
messages for a wrong key, an unreachable server and unreadable files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import session_scope
from tests.app.conftest import backend_settings, new_key, set_threshold
from tests.utils.images import phantom, write_png8
from tests.utils.live import live_api
from tests.utils.ports import free_port
from tests.utils.service import dicom_bytes, start_worker, stop_process

runner = CliRunner()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[tuple[Settings, str]]:
    """A migrated SQLite service with a real worker, served on a free port."""
    data = tmp_path_factory.mktemp("send") / "data"
    with backend_settings("sqlite", data, checkpoint) as settings:
        worker = start_worker(settings)
        try:
            with live_api(settings, free_port()) as url:
                yield settings, url
        finally:
            stop_process(worker)


def export(folder: Path, tag: str) -> Path:
    """Two DICOM series (2 and 3 slices) and a folder of 2 PNG slices under ``folder``."""
    for n, count in ((1, 2), (2, 3)):
        uid = f"1.2.826.0.1.3680043.8.498.{tag}.{n}"
        for i in range(count):
            path = folder / "dicom" / f"{n}-{i}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(dicom_bytes(series_uid=uid, instance=i + 1))
    for i in range(2):
        write_png8(folder / "png" / f"slice-{i}.png", phantom(64, seed=100 + i + 10 * len(tag)))
    return folder


def send(url: str, key: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["send", *args, "--url", url, "--key", key])
    return result.exit_code, result.output


def counts(settings: Settings) -> tuple[int, int]:
    with session_scope(settings.database_url) as session:
        series = session.scalar(select(func.count()).select_from(Series))
        instances = session.scalar(select(func.count()).select_from(Instance))
    return int(series or 0), int(instances or 0)


@pytest.mark.slow  # waits for a real worker's verdicts (the first loads the model)
def test_send_prints_each_verdict_and_exits_3_on_an_artifact(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    set_threshold(settings, 0.0)  # every slice flagged: the tiny model says "artifact"
    before = counts(settings)
    code, out = send(url, new_key(settings, "scanner"), str(export(tmp_path, "31")))
    assert code == 3, out
    assert out.count("artifact ") == 3, out
    assert "2 of 2 slices flagged" in out and "3 of 3 slices flagged" in out
    assert "3 series: 3 artifact" in out
    assert "uploading" in out and "verdicts" in out and "3/3" in out  # the progress bars
    assert counts(settings) == (before[0] + 3, before[1] + 7)


@pytest.mark.slow  # waits for a real worker's verdicts (the first loads the model)
def test_send_exits_0_when_every_series_is_clean(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    set_threshold(settings, 1.01)  # nothing flagged
    code, out = send(url, new_key(settings, "scanner"), str(export(tmp_path, "32")))
    assert code == 0, out
    assert "3 series: 3 clean" in out


@pytest.mark.slow  # waits for a real worker's verdicts (the first loads the model)
def test_sending_the_same_files_again_duplicates_nothing(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    key, folder = new_key(settings, "scanner"), export(tmp_path, "33")
    first_code, first = send(url, key, str(folder), "--no-wait")
    after_first = counts(settings)
    second_code, second = send(url, key, str(folder))
    assert first_code == 0, first
    assert "sent " in first and "3 series: 3 sent" in first
    assert second_code in (0, 3), second  # the tiny model's verdicts, whichever
    assert counts(settings) == after_first  # the same series and instances, not new ones
    assert "0 new slices" not in second  # waited: every line is a verdict


def test_a_wrong_key_is_a_clear_error(live: tuple[Settings, str], tmp_path: Path) -> None:
    _, url = live
    code, out = send(url, "amaqc_not-a-key", str(export(tmp_path, "34")))
    assert code == 1
    assert "refused the API key (401" in out and "--key" in out
    assert "Traceback" not in out


def test_a_radiographer_key_is_told_to_use_a_scanner_key(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    code, out = send(url, new_key(settings, "radiographer"), str(export(tmp_path, "35")))
    assert code == 1
    assert "403" in out and "use a scanner key" in out


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out = send(url, "amaqc_x", str(export(tmp_path, "36")))
    assert code == 1
    assert f"cannot reach the amaqc server at {url}" in out


def test_an_unreadable_file_stops_before_anything_is_sent(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    folder = export(tmp_path, "37")
    (folder / "dicom" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    (folder / "dicom" / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    before = counts(settings)
    code, out = send(url, new_key(settings, "scanner"), str(folder))
    assert code == 1
    assert "broken.dcm: a DICOM file whose header does not parse" in out
    assert "gone.dcm: cannot read it" in out
    assert counts(settings) == before


def test_a_named_file_that_is_no_image_is_refused_and_folders_skip_them(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    code, out = send(url, new_key(settings, "scanner"), str(notes))
    assert code == 1 and "notes.txt: not an image the server takes" in out
    folder = export(tmp_path / "x", "38")
    (folder / "png" / "README.txt").write_text("export notes")
    code, out = send(url, new_key(settings, "scanner"), str(folder), "--no-wait")
    assert code == 0, out
    assert "skipped 1 files that are not" in out


def test_scanner_option_names_the_sending_scanner_on_the_server(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    folder = tmp_path / "png"
    write_png8(folder / "1.png", phantom(64, seed=390))
    code, out = send(
        url, new_key(settings, "scanner"), str(folder), "--no-wait", "--scanner", "MR-WEST"
    )
    assert code == 0, out
    series_id = int(re.search(r"sent +series (\d+):", out).group(1))  # type: ignore[union-attr]
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None and series.scanner == "MR-WEST"


@pytest.mark.slow  # waits for a real worker's verdicts (the first loads the model)
def test_a_nifti_volume_is_one_series_of_its_slices(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    import nibabel as nib
    import numpy as np

    settings, url = live
    volume = np.stack([phantom(64, seed=400 + i) for i in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), tmp_path / "t1.nii.gz")
    code, out = send(url, new_key(settings, "scanner"), str(tmp_path / "t1.nii.gz"))
    assert code in (0, 3), out  # a verdict, whichever the tiny model gives
    assert "NIfTI" in out and "1 series:" in out and "of 3 slices flagged" in out


@pytest.mark.slow  # waits for a real worker's verdict
def test_a_series_bigger_than_one_upload_is_one_series_with_every_slice(
    live: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = live
    uid = "1.2.826.0.1.3680043.8.498.395"
    for i in range(5):
        (tmp_path / f"{i}.dcm").write_bytes(dicom_bytes(series_uid=uid, instance=i + 1))
    code, out = send(url, new_key(settings, "scanner"), str(tmp_path), "--batch-files", "2")
    assert code in (0, 3), out
    assert "(5 files)" in out and "of 5 slices flagged" in out and "1 series:" in out
    with session_scope(settings.database_url) as session:
        stored = session.scalar(
            select(func.count()).select_from(Instance).join(Series).where(Series.series_uid == uid)
        )
    assert stored == 5
