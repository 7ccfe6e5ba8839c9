"""What the client takes a file for (by its bytes) and how files group into series."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from amaqc_client.files import UnreadableFile, batches, classify, group, walk
from tests.utils.images import phantom, write_png8
from tests.utils.service import dicom_bytes


def nifti(path: Path, slices: int = 3) -> Path:
    volume = np.stack([phantom(32, seed=i) for i in range(slices)], axis=-1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return path


def test_kinds_come_from_the_bytes_not_the_names(tmp_path: Path) -> None:
    (tmp_path / "IM0001").write_bytes(dicom_bytes(series_uid="1.2.3.4"))
    write_png8(tmp_path / "scan.png", phantom(32)).rename(tmp_path / "scan.dcm")  # misnamed
    nifti(tmp_path / "vol.nii")
    (tmp_path / "vol2").write_bytes(gzip.compress((tmp_path / "vol.nii").read_bytes()))
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("x.dcm", dicom_bytes())
    (tmp_path / "notes.txt").write_text("hello")
    kinds = {p.name: (info.kind if (info := classify(p)) else None) for p in tmp_path.iterdir()}
    assert kinds == {
        "IM0001": "dicom",
        "scan.dcm": "png",
        "vol.nii": "nifti",
        "vol2": "nifti",
        "a.zip": "zip",
        "notes.txt": None,
    }
    assert classify(tmp_path / "IM0001").series_uid == "1.2.3.4"  # type: ignore[union-attr]


def test_a_truncated_dicom_header_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(dicom_bytes()[:200])
    with pytest.raises(UnreadableFile, match="header does not parse") as caught:
        classify(path)
    assert str(path) not in caught.value.reason  # the reason alone names no file


def test_series_are_dicom_uids_png_folders_and_single_volumes(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / "d" / f"{i}.dcm").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / f"{i}.dcm").write_bytes(dicom_bytes(series_uid="1.2.3.5", instance=i))
        write_png8(tmp_path / "p" / f"{i}.png", phantom(32, seed=i))
        nifti(tmp_path / "n" / f"{i}.nii")
    (tmp_path / "d" / "DICOMDIR").write_bytes(dicom_bytes())
    (tmp_path / "d" / ".hidden.dcm").write_bytes(dicom_bytes())
    infos = [info for p in walk([tmp_path]) if (info := classify(p))]
    groups = group(infos)
    sizes = sorted((g.kind, len(g.files)) for g in groups)
    assert sizes == [("dicom", 2), ("nifti", 1), ("nifti", 1), ("png", 2)]
    by_kind = {g.kind: g for g in groups}
    assert by_kind["dicom"].series_uid is None  # the server reads the files' own UID
    assert by_kind["png"].series_uid and by_kind["png"].series_uid.startswith("2.25.")


def test_a_made_uid_is_the_same_for_the_same_files_and_another_for_others(tmp_path: Path) -> None:
    def uid() -> str | None:
        infos = [i for p in walk([tmp_path]) if (i := classify(p))]
        return group(infos)[0].series_uid

    write_png8(tmp_path / "p" / "1.png", phantom(32, seed=1))
    first = uid()
    assert uid() == first
    write_png8(tmp_path / "p" / "1.png", phantom(32, seed=2))
    assert uid() != first
    assert first is not None and len(first) <= 64  # a valid DICOM UID length


def test_batches_stop_at_the_file_count_and_the_bytes() -> None:
    files = [Path(f"{i}.dcm") for i in range(5)]
    sizes = dict.fromkeys(files, 10)
    assert [len(b) for b in batches(files, sizes, max_files=2, max_bytes=1000)] == [2, 2, 1]
    assert [len(b) for b in batches(files, sizes, max_files=10, max_bytes=25)] == [2, 2, 1]
    sizes[files[0]] = 100  # one file over the bytes: an upload of its own
    assert [len(b) for b in batches(files, sizes, max_files=10, max_bytes=25)] == [1, 2, 2]
    assert [f for b in batches(files, sizes) for f in b] == files
