"""Every upload limit (docs/service.md, "Limits"): a request over it is a 413 whose message
names what was over, the limit and the AMAQC_* setting that raises it; nothing is stored; a
request under it is accepted, also past the multipart parser's own defaults."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator

import httpx
import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance
from app.db.session import session_scope
from tests.utils.dicomweb import STUDIES, stow_body, stow_headers
from tests.utils.images import phantom
from tests.utils.service import dicom_bytes, png_bytes, series_files, zip_bytes

Request = Callable[[TestClient, dict[str, str]], httpx.Response]


def _files(n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    data = png_bytes()
    return [("files", (f"p{i}.png", data, "image/png")) for i in range(n)]


def _nii_gz() -> bytes:
    volume = nib.Nifti1Image((phantom(64)[:, :, None] * 1000).astype(np.float32), np.eye(4))
    return gzip.compress(volume.to_bytes())


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


def _streamed_upload(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    """A chunked body (no Content-Length) under the request allowance, over the file limit."""
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.dcm"\r\n'
            f"Content-Type: application/dicom\r\n\r\n"
        ).encode()
        + b"\0" * (700 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        "/api/v1/series",
        content=_chunks(body),
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


#: case -> (settings changed, the request, the text the message must hold)
CASES: dict[str, tuple[dict[str, float], Request, str]] = {
    "files in one request": (
        {"max_files": 3},
        lambda c, h: c.post("/api/v1/series", files=_files(4), headers=h),
        "AMAQC_MAX_FILES=3",
    ),
    "members of one ZIP": (
        {"max_files": 3},
        lambda c, h: c.post(
            "/api/v1/series",
            files=[("files", ("s.zip", zip_bytes({f"{i}.png": png_bytes() for i in range(4)})))],
            headers=h,
        ),
        "AMAQC_MAX_FILES=3",
    ),
    "DICOMweb parts": (
        {"max_files": 2},
        lambda c, h: c.post(
            STUDIES,
            content=stow_body([dicom_bytes(instance=i + 1) for i in range(3)]),
            headers=stow_headers(h),
        ),
        "AMAQC_MAX_FILES=2",
    ),
    "bytes by Content-Length": (
        {"max_upload_mb": 0.5},
        lambda c, h: c.post(
            "/api/v1/series", files=[("files", ("b.dcm", b"\0" * (2 * 1024 * 1024)))], headers=h
        ),
        "AMAQC_MAX_UPLOAD_MB=0.5 MB",
    ),
    "bytes streamed": ({"max_upload_mb": 0.5}, _streamed_upload, "AMAQC_MAX_UPLOAD_MB=0.5 MB"),
    "pixels of a slice": (
        {"max_pixels": 1000},
        lambda c, h: c.post("/api/v1/series", files=_files(1), headers=h),
        "AMAQC_MAX_PIXELS=1000",
    ),
    "ZIP unpacked": (
        {"max_unzipped_mb": 0.001},
        lambda c, h: c.post(
            "/api/v1/series",
            files=[("files", ("s.zip", zip_bytes({"a.dcm": dicom_bytes()})))],
            headers=h,
        ),
        "AMAQC_MAX_UNZIPPED_MB=0.001 MB",
    ),
    ".nii.gz unpacked": (
        {"max_unzipped_mb": 0.001},
        lambda c, h: c.post(
            "/api/v1/series", files=[("files", ("v.nii.gz", _nii_gz()))], headers=h
        ),
        "AMAQC_MAX_UNZIPPED_MB=0.001 MB",
    ),
}


def _instances(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_limit_answers_413_naming_it_and_its_setting(
    case: str, client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    changes, send, setting = CASES[case]
    for name, value in changes.items():
        setattr(settings, name, value)
    r = send(client, scanner)
    assert r.status_code == 413, r.text
    text = r.json()["detail"]
    assert setting in text and f"raise {setting.split('=')[0]}" in text, text
    assert _instances(settings) == 0


def test_1200_files_pass_the_form_parser_under_amaqc_max_files(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    """The form parser's own default (1000 files) used to answer 400 first."""
    assert settings.max_files == 2000
    settings.max_upload_mb = 16
    r = client.post("/api/v1/series", files=_files(1200), headers=scanner)
    assert r.status_code == 202, r.text
    assert r.json()["new_instances"] == 1  # the same bytes 1200 times: stored once


def test_too_many_form_fields_is_413_naming_the_fixed_limit(
    client: TestClient, scanner: dict[str, str]
) -> None:
    fields = [(f"f{i}", (None, b"x")) for i in range(30)]
    r = client.post("/api/v1/series", files=[*series_files(1), *fields], headers=scanner)
    assert r.status_code == 413, r.text
    assert "more than 20 form fields (a fixed limit)" in r.json()["detail"]


def test_a_huge_text_field_is_413_naming_the_field(
    client: TestClient, scanner: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series",
        files=[*series_files(1), ("protocol", (None, b"p" * (100 * 1024)))],
        headers=scanner,
    )
    assert r.status_code == 413, r.text
    assert "form field 'protocol'" in r.json()["detail"] and "64 KB" in r.json()["detail"]
