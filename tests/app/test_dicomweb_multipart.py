"""The streaming multipart/related reader: boundaries however they are quoted or split."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.dicomweb.multipart import PartWriter, RelatedType, parse_content_type
from app.ingest.errors import IngestError
from tests.utils.dicomweb import BOUNDARY, stow_body

# a near-delimiter (CRLF -- boundary minus its last character) inside the first part
PARTS = [b"first\r\n--" + BOUNDARY[:-1].encode() + b"X tail", b"", b"x" * 5000]


def _read(body: bytes, tmp_path: Path, chunk: int, boundary: str = BOUNDARY) -> list[bytes]:
    writer = PartWriter(RelatedType(boundary, "application/dicom"), tmp_path, max_parts=10)
    for start in range(0, len(body), chunk):
        writer.feed(body[start : start + chunk])
    return [p.path.read_bytes() for p in writer.finish()]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_parts_come_back_byte_exact_whatever_the_chunking(tmp_path: Path, chunk: int) -> None:
    assert _read(stow_body(PARTS), tmp_path, chunk) == PARTS


def test_preamble_and_epilogue_are_ignored(tmp_path: Path) -> None:
    body = stow_body(PARTS, preamble=b"ignore me", epilogue=b"\r\nand me")
    assert _read(body, tmp_path, 13) == PARTS


def test_transport_padding_after_a_boundary_is_allowed(tmp_path: Path) -> None:
    body = f"--{BOUNDARY}  \t\r\n\r\nabc\r\n--{BOUNDARY}--".encode()
    assert _read(body, tmp_path, 5) == [b"abc"]


def test_a_part_without_headers_takes_the_root_type(tmp_path: Path) -> None:
    writer = PartWriter(RelatedType("b", "application/dicom"), tmp_path, max_parts=10)
    writer.feed(b"--b\r\n\r\nabc\r\n--b--")
    (part,) = writer.finish()
    assert part.content_type == "application/dicom" and part.path.read_bytes() == b"abc"


def test_more_parts_than_allowed_is_413(tmp_path: Path) -> None:
    writer = PartWriter(RelatedType(BOUNDARY, "application/dicom"), tmp_path, max_parts=2)
    with pytest.raises(IngestError) as err:
        writer.feed(stow_body([b"a", b"b", b"c"]))
    assert err.value.status_code == 413


def test_a_body_without_its_boundary_is_400(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no multipart boundary"):
        _read(b"just bytes", tmp_path, 4)


@pytest.mark.parametrize(
    "header",
    [
        f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"',
        f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
        f'Multipart/Related; boundary="{BOUNDARY}"; type="Application/DICOM"',
        f"multipart/related; boundary={BOUNDARY}",
    ],
)
def test_the_boundary_is_read_quoted_or_not(header: str) -> None:
    assert parse_content_type(header).boundary == BOUNDARY


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("multipart/form-data; boundary=x", 415),
        ("application/dicom", 415),
        ("", 415),
        ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
        ('multipart/related; type="application/dicom"; boundary=""', 400),
    ],
)
def test_an_unusable_content_type_is_refused(header: str, status: int) -> None:
    with pytest.raises(IngestError) as err:
        parse_content_type(header)
    assert err.value.status_code == status
