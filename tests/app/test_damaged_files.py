"""Damaged files the decoder fuzz test (test_fuzz_decoders.py) found answered with a 500:
each is now a 422 naming the file (or, for a header value that does not parse, accepted
without it). One file per test, built from the seed corpus, sent through the API."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.utils.corpus import CORPUS
from tests.utils.service import dicom_bytes

SIGNATURE = "found a ZIP signature but not a readable ZIP file"


def _seed(name: str) -> bytearray:
    return bytearray((CORPUS / name).read_bytes())


def _upload(
    client: TestClient, headers: dict[str, str], name: str, data: bytes | bytearray
) -> dict[str, Any]:
    r = client.post("/api/v1/series", files=[("files", (name, bytes(data)))], headers=headers)
    assert r.status_code in (202, 422), (r.status_code, r.text)
    return {"status": r.status_code, **r.json()}


def test_a_dicom_with_an_unknown_vr_in_its_file_meta_is_a_422(
    client: TestClient, scanner: dict[str, str]
) -> None:
    """pydicom raised NotImplementedError ("Unknown Value Representation 'TL'") when ingest
    looked again at the refused file for a non-image SOP class."""
    data = _seed("mr.dcm")
    at = data.index(b"\x02\x00\x00\x00UL")  # (0002,0000) File Meta Information Group Length
    data[at + 4 : at + 6] = b"TL"
    body = _upload(client, scanner, "x.dcm", data)
    assert body["status"] == 422 and body["detail"].startswith("x.dcm: unreadable DICOM file")


def test_a_nifti_gz_with_a_wrong_crc_is_a_422(client: TestClient, scanner: dict[str, str]) -> None:
    """Its header reads fine; unpacking it whole (the zip-bomb check) raised BadGzipFile."""
    data = _seed("vol.nii.gz")
    (crc,) = struct.unpack("<I", data[-8:-4])
    data[-8:-4] = struct.pack("<I", crc ^ 0xFFFF)
    body = _upload(client, scanner, "v.nii.gz", data)
    assert body["status"] == 422 and "CRC check failed" in body["detail"]


def test_a_gzip_whose_first_block_is_damaged_is_a_422(
    client: TestClient, scanner: dict[str, str]
) -> None:
    """Sniffing what the gzip holds raised zlib.error ("invalid block type")."""
    data = _seed("vol.nii.gz")
    data[10] = 0x07  # the first deflate block: final, type 3 (reserved)
    body = _upload(client, scanner, "v.nii.gz", data)
    assert (
        body["status"] == 422 and "gzip-compressed data that cannot be unpacked" in body["detail"]
    )


def _zip_damage(kind: str) -> bytearray:
    data = _seed("series.zip")
    if kind == "offset":  # the central directory claims to start past where it does:
        end = data.rindex(b"PK\x05\x06")  # every member's offset becomes negative (EINVAL)
        (start,) = struct.unpack("<I", data[end + 16 : end + 20])
        data[end + 16 : end + 20] = struct.pack("<I", start + 10_000)
    elif kind == "deflate":  # the first member's deflate stream: a reserved block type
        (name_length,) = struct.unpack("<H", data[26:28])
        data[30 + name_length] = 0x07
    else:  # the first member's local name flagged UTF-8 but not UTF-8
        data[7] |= 0x08  # general purpose flag bit 11
        data[31] = 0xFF
    return data


@pytest.mark.parametrize("kind", ["offset", "deflate", "utf8-name"])
def test_a_damaged_zip_is_a_422(client: TestClient, scanner: dict[str, str], kind: str) -> None:
    """zipfile raised OSError (EINVAL), zlib.error or UnicodeDecodeError."""
    body = _upload(client, scanner, "s.zip", _zip_damage(kind))
    assert body["status"] == 422 and body["detail"].startswith(f"s.zip: {SIGNATURE}")


def test_a_dicom_whose_instance_number_is_not_a_number_is_stored_without_it(
    client: TestClient, scanner: dict[str, str]
) -> None:
    """An IS value of "2!" raised ValueError while reading the identifiers of a valid image."""
    data = bytearray(dicom_bytes(instance=2))  # 64 px: the tiny model's patch
    at = data.index(b"\x20\x00\x13\x00IS\x02\x00")  # (0020,0013) Instance Number, 2 bytes
    data[at + 8 : at + 10] = b"2!"
    body = _upload(client, scanner, "x.dcm", data)
    assert body["status"] == 202, body
    series = client.get(body["status_url"], headers=scanner).json()
    assert [i["instance_number"] for i in series["instances"]] == [None]
