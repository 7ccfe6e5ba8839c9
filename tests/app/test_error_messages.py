"""Errors that name the problem (issue 23 item 6; docs/service.md, "Errors"): every refusal of
the ingest path names the file (or part), what was expected and what was found; formats are
told by their bytes, never by the file name; nothing is stored."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import MPEG2MPML
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Instance
from app.db.session import session_scope
from tests.utils.dicomweb import (
    STUDIES,
    as_dataset,
    stow_body,
    stow_headers,
    with_transfer_syntax,
)
from tests.utils.service import dicom_bytes, png_bytes, series_files, zip_bytes

ACCEPTED = "DICOM, PNG, JPEG or NIfTI (.nii, .nii.gz) files, or one ZIP of them"
IN_ZIP = "DICOM, PNG, JPEG or NIfTI (.nii, .nii.gz) files"
AS_IMAGE = " (save the slice as PNG or DICOM)"
UNPACKED = " (send the files uncompressed; only a NIfTI may be gzipped)"
RANDOM = np.random.default_rng(23).bytes(4096)  # fixed: a chance signature cannot flake
Files = list[tuple[str, tuple[str, bytes]]]


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(buffer, format=fmt)
    return buffer.getvalue()


def _nifti_pair_header() -> bytes:
    """The .hdr of a NIfTI-1 .hdr/.img pair: a header whose image is in another file."""
    pair = nib.Nifti1Pair(np.ones((4, 4, 4), np.float32), np.eye(4))
    return bytes(pair.header.binaryblock)


def _one(name: str, data: bytes) -> Callable[[], Files]:
    return lambda: [("files", (name, data))]


def _zip_beside_a_file() -> Files:
    return [
        ("files", ("s.zip", zip_bytes({"a.png": png_bytes()}))),
        ("files", ("b.png", png_bytes())),
    ]


#: case -> (the files of a POST /series, the whole detail of the 422)
CASES: dict[str, tuple[Callable[[], Files], str]] = {
    "plain text": (
        _one("notes.txt", b"hello, not an image\n"),
        f"notes.txt: found plain text; expected {ACCEPTED}",
    ),
    "random bytes": (
        _one("scan.dcm", RANDOM),
        f"scan.dcm: found unrecognised bytes starting 0x{RANDOM[:8].hex()}; expected {ACCEPTED}",
    ),
    "GIF": (
        _one("slice.png", _image("GIF")),
        f"slice.png: found a GIF image; expected {ACCEPTED}" + AS_IMAGE,
    ),
    "TIFF": (
        _one("t.tif", _image("TIFF")),
        f"t.tif: found a TIFF image; expected {ACCEPTED}" + AS_IMAGE,
    ),
    "BMP (named by pillow)": (
        _one("b.bmp", _image("BMP")),
        f"b.bmp: found a BMP image; expected {ACCEPTED}" + AS_IMAGE,
    ),
    "PDF": (
        _one("report.pdf", b"%PDF-1.7\n%..."),
        f"report.pdf: found a PDF document; expected {ACCEPTED}",
    ),
    "JSON": (
        _one("meta.json", b'{"series": 1}'),
        f"meta.json: found text (JSON); expected {ACCEPTED}",
    ),
    "NumPy array": (
        _one("a.npy", b"\x93NUMPY\x01\x00" + b" " * 118),
        f"a.npy: found a NumPy .npy array; expected {ACCEPTED} (save the slice as PNG, or the "
        "volume as NIfTI)",
    ),
    "gzip of text": (
        _one("v.nii.gz", gzip.compress(b"not a volume")),
        f"v.nii.gz: found gzip-compressed data holding plain text, not a NIfTI; expected {ACCEPTED}"
        + UNPACKED,
    ),
    "gzipped DICOM": (
        _one("s.dcm.gz", gzip.compress(dicom_bytes())),
        f"s.dcm.gz: found a gzip-compressed DICOM file; expected {ACCEPTED}" + UNPACKED,
    ),
    "NIfTI pair header": (
        _one("v.hdr", _nifti_pair_header()),
        "v.hdr: found a NIfTI-1 header without its image (the .hdr of a .hdr/.img pair); expected "
        f"{ACCEPTED} (send the volume as one .nii or .nii.gz file)",
    ),
    "text in a ZIP": (
        _one("s.zip", zip_bytes({"dir/readme.txt": b"read me"})),
        f"s.zip/readme.txt: found plain text; expected {IN_ZIP}",
    ),
    "empty file": (
        _one("e.dcm", b""),
        f"e.dcm: found an empty file (0 bytes); expected {ACCEPTED}",
    ),
    "truncated PNG": (
        _one("t.png", png_bytes()[:100]),
        "t.png: unreadable PNG file: image file is truncated; expected a complete, readable PNG "
        "file",
    ),
    "JPEG signature only": (
        _one("t.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 60),
        "t.jpg: unreadable JPEG header: cannot identify image file; expected a complete, readable "
        "JPEG file",
    ),
    "DICOM of 0x0": (
        _one("zero.dcm", dicom_bytes(pixels=False, rows=0)),
        "zero.dcm: found a DICOM image of 0x0 (its header's size), it has no pixels; expected an "
        "image of at least 1x1",
    ),
    "ZIP beside a file": (
        _zip_beside_a_file,
        "s.zip: found a ZIP beside 1 other file(s); expected one ZIP alone, or the files "
        "themselves without a ZIP",
    ),
    "ZIP in a ZIP": (
        _one("s.zip", zip_bytes({"inner.zip": zip_bytes({"a.png": png_bytes()})})),
        f"s.zip/inner.zip: found a ZIP inside the ZIP; expected {IN_ZIP} (unpack the inner ZIP, "
        "or send it on its own)",
    ),
    "ZIP without files": (
        _one("s.zip", zip_bytes({".DS_Store": b"x", "__MACOSX/a": b"y"})),
        "s.zip: found a ZIP without files (folders and hidden or system files do not count); "
        f"expected {IN_ZIP} in it",
    ),
    "broken ZIP": (
        _one("s.zip", b"PK\x03\x04" + b"\0" * 60),
        "s.zip: found a ZIP signature but not a readable ZIP file (File is not a zip file); "
        "expected a complete ZIP archive",
    ),
    "ZIP member outside the archive": (
        _one("s.zip", zip_bytes({"../a.png": png_bytes()})),
        "s.zip: member '../a.png' has a '..' path component; expected members with relative paths "
        "inside the archive",
    ),
    "two series in one upload": (
        lambda: [*series_files(1, "1.2.3.1"), *series_files(1, "1.2.3.2")],
        "found files of 2 different series (Series Instance UIDs 1.2.3.1, 1.2.3.2); expected one "
        "series per upload",
    ),
}


def _instances(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_refused_file_is_named_with_what_was_expected_and_what_was_found(
    case: str, client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    files, detail = CASES[case]
    r = client.post("/api/v1/series", files=files(), headers=scanner)
    assert (r.status_code, r.json()["detail"]) == (422, detail)
    assert _instances(settings) == 0


def test_a_library_message_does_not_carry_the_servers_temporary_path(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series", files=[("files", ("t.dcm", dicom_bytes()[:-3000]))], headers=scanner
    )
    detail = r.json()["detail"]
    assert r.status_code == 422 and detail.startswith(
        "t.dcm: unreadable DICOM file: The number of bytes of pixel"
    )
    assert detail.endswith("expected a complete, readable DICOM file")
    assert str(settings.data_dir) not in detail and "part0" not in detail


def test_more_than_one_file_to_slices_names_them(
    client: TestClient, scanner: dict[str, str]
) -> None:
    r = client.post("/api/v1/slices", files=series_files(4), headers=scanner)
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "found 4 files (s0.dcm, s1.dcm, s2.dcm, ...); expected one image per request to "
        "/api/v1/slices (send a series to /api/v1/series)",
    )


def test_a_form_without_files_names_the_fields_it_has(
    client: TestClient, scanner: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series",
        files=[("image", ("s.dcm", dicom_bytes()))],
        data={"protocol": "t2"},
        headers=scanner,
    )
    assert (r.status_code, r.json()["detail"]) == (
        422,
        f"no files in the upload: found only the form field(s) 'protocol', 'image'; expected "
        f"{ACCEPTED} in the multipart field 'files' (curl -F files=@slice.dcm)",
    )


def test_a_series_uid_field_over_64_characters_says_what_a_uid_is(
    client: TestClient, scanner: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/series", files=series_files(1), data={"series_uid": "1" * 80}, headers=scanner
    )
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "form field 'series_uid': found 80 characters; expected a DICOM UID of at most 64",
    )


def test_a_long_file_name_is_accepted_and_one_over_the_header_limit_is_413(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    long = client.post(
        "/api/v1/series", files=[("files", ("n" * 4000 + ".dcm", dicom_bytes()))], headers=scanner
    )
    assert long.status_code == 202, long.text
    r = client.post(
        "/api/v1/series", files=[("files", ("n" * 5000 + ".dcm", dicom_bytes()))], headers=scanner
    )
    assert r.status_code == 413, r.text  # a limit, as every limit is (was a 422)
    detail = r.json()["detail"]
    assert detail.startswith("part 1: a header line is longer than 4224 bytes, a fixed limit")
    assert "Names up to about 4000 bytes are accepted" in detail
    assert _instances(settings) == 1


def _stow_failure(
    client: TestClient, scanner: dict[str, str], part: bytes, url: str = STUDIES
) -> str:
    r = client.post(url, content=stow_body([part]), headers=stow_headers(scanner))
    assert r.status_code == 409, r.text
    (item,) = r.json().get("00081198", r.json().get("0008119A", {})).get("Value", [])
    return str(item["00091002"]["Value"][0])


def _without_sop_instance_uid() -> bytes:
    ds = as_dataset(dicom_bytes())
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)  # (a conformant file must carry one)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("part", "detail"),
    [
        (
            b"hello, not DICOM",
            "part 1: found plain text; expected a DICOM instance (application/dicom)",
        ),
        (_image("GIF"), "part 1: found a GIF image; expected a DICOM instance (application/dicom)"),
        (png_bytes(), "part 1: found a PNG image; expected a DICOM instance (application/dicom)"),
        (
            _without_sop_instance_uid(),
            "part 1: found a DICOM dataset without a SOP Instance UID; expected a DICOM instance",
        ),
        (
            with_transfer_syntax(MPEG2MPML),
            "part 1: transfer syntax MPEG2 Main Profile / Main Level cannot be decoded here; "
            "expected one with a decoder, e.g. Explicit VR Little Endian (uncompressed)",
        ),
    ],
    ids=["text", "GIF", "PNG", "no SOP Instance UID", "MPEG-2"],
)
def test_a_refused_stow_part_says_what_it_is_instead_of_dicom(
    client: TestClient, scanner: dict[str, str], part: bytes, detail: str
) -> None:
    assert _stow_failure(client, scanner, part) == detail


def test_a_stow_part_of_another_study_names_both_study_uids(
    client: TestClient, scanner: dict[str, str]
) -> None:
    part = dicom_bytes(series_uid="1.2.3.4.5")  # its study is 1.2.3.4.5.0
    assert _stow_failure(client, scanner, part, f"{STUDIES}/1.2.3.9") == (
        "part 1: found Study Instance UID 1.2.3.4.5.0; expected 1.2.3.9, the study of the URL"
    )
