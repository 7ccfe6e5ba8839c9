"""Bad input: each case a 4xx JSON naming the problem, nothing stored, server still serving."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance, Series
from app.db.session import session_scope
from tests.utils.service import dicom_bytes, png_bytes, series_files, zip_bytes

Part = tuple[str, tuple[str, bytes, str]]


def _part(name: str, data: bytes, ctype: str = "application/octet-stream") -> list[Part]:
    return [("files", (name, data, ctype))]


def _png_bomb() -> bytes:
    """A valid 30000 x 30000 8-bit PNG header + a tiny zlib stream of zeros (~1 MB of rows
    would decode to 900 MP): refused from the header, before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (30001 * 64), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _nifti_nan() -> bytes:
    data = np.ones((16, 16, 2), np.float32)
    data[3, 3, 0] = np.nan
    return nib.Nifti1Image(data, np.eye(4)).to_bytes()


def _zip_bomb() -> bytes:
    """200 MB of zeros in ~200 kB: over the 100 MB unpacked limit the test sets."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.dcm", b"\x00" * (200 * 1024 * 1024))
    return buffer.getvalue()


CASES: dict[str, tuple[Callable[[], list[Part]], int, str]] = {
    "not an image": (lambda: _part("notes.txt", b"hello, not an image"), 422, "notes.txt"),
    "truncated DICOM": (lambda: _part("t.dcm", dicom_bytes()[:-3000]), 422, "t.dcm"),
    "DICOM without pixel data": (
        lambda: _part("n.dcm", dicom_bytes(pixels=False)),
        422,
        "no pixel data",
    ),
    "PNG decompression bomb": (lambda: _part("bomb.png", _png_bomb()), 413, "pixels"),
    "upload over the size limit": (
        lambda: _part("big.dcm", b"\0" * (3 * 1024 * 1024)),
        413,
        "AMAQC_MAX_UPLOAD_MB",
    ),
    "ZIP with ../ path": (
        lambda: _part("z.zip", zip_bytes({"../evil.png": png_bytes()})),
        422,
        "'..'",
    ),
    "ZIP with absolute path": (
        lambda: _part("z.zip", zip_bytes({"/etc/evil.png": png_bytes()})),
        422,
        "absolute",
    ),
    "ZIP with symlink": (
        lambda: _part("z.zip", zip_bytes({"a.png": png_bytes()}, symlinks={"l": "/etc/passwd"})),
        422,
        "symbolic link",
    ),
    "NIfTI with NaN": (lambda: _part("v.nii", _nifti_nan()), 422, "NaN"),
    "empty file": (lambda: _part("e.dcm", b""), 422, "empty"),
    # multipart, but no part named "files"
    "no files at all": (lambda: [("note", ("n.txt", b"x", "text/plain"))], 422, "no files"),
    "0x0 image": (lambda: _part("zero.dcm", dicom_bytes(pixels=False, rows=0)), 422, "0x0"),
}


def _stored(settings: Settings) -> tuple[int, int, int]:
    with session_scope(settings.database_url) as session:
        n_inst = session.scalar(select(func.count()).select_from(Instance)) or 0
        n_series = session.scalar(select(func.count()).select_from(Series)) or 0
    objects = (
        sum(1 for p in settings.storage_dir.rglob("*") if p.is_file())
        if settings.storage_dir.exists()
        else 0
    )
    return int(n_inst), int(n_series), objects


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_upload_is_refused_and_nothing_is_stored(
    case: str, client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    make, status, words = CASES[case]
    parts = make()
    r = client.post("/api/v1/series", files=parts, data={"protocol": "x"}, headers=scanner)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert _stored(settings) == (0, 0, 0)
    assert client.post("/api/v1/series", files=series_files(1), headers=scanner).status_code == 202


def test_zip_bomb_is_refused(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    settings.max_upload_mb = 20
    settings.max_unzipped_mb = 100
    r = client.post("/api/v1/series", files=_part("bomb.zip", _zip_bomb()), headers=scanner)
    assert r.status_code == 413 and "zip bomb" in r.json()["detail"]
    assert _stored(settings) == (0, 0, 0)


def test_wrong_content_type_is_415(client: TestClient, scanner: dict[str, str]) -> None:
    r = client.post("/api/v1/series", json={"files": []}, headers=scanner)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
