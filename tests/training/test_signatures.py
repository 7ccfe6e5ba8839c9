"""One table of file signatures for the dataset readers and the upload sniffer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.ingest.sniff import content_extension
from training.data.readers import read_slices
from training.data.signatures import HEAD, signature


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _npy() -> bytes:
    out = io.BytesIO()
    np.save(out, np.zeros((8, 8)))
    return out.getvalue()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\0" * 128 + b"DICM" + b"\0" * 20, "dicom"),
        (_png(), "png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "jpeg"),
        (b"\x1f\x8b\x08" + b"\0" * 20, "gzip"),
        (b"\0" * 344 + b"n+1\x00" + b"\0" * 10, "nifti"),
        (b"\0" * 4 + b"n+2\x00" + b"\0" * 600, "nifti"),
        (_npy(), "npy"),
        (b"GIF89a" + b"\0" * 20, None),
        (b"hello, world", None),
        (b"", None),
    ],
)
def test_signature_names_the_format_from_the_first_bytes(head: bytes, expected: str) -> None:
    assert signature(head[:HEAD]) == expected


def test_reader_and_sniffer_agree_on_the_formats_both_take(tmp_path: Path) -> None:
    """A PNG renamed .dcm is a PNG to both; a .npy is read by the dataset reader and refused
    by the upload sniffer (not an upload format)."""
    png = tmp_path / "slice.dcm"
    png.write_bytes(_png())
    assert content_extension("slice.dcm", png) == ".png"
    assert read_slices(png)[0].pixels.shape == (8, 8)
    npy = tmp_path / "volume.bin"
    npy.write_bytes(_npy())
    assert read_slices(npy)[0].pixels.shape == (8, 8)
    with pytest.raises(Exception, match="NumPy"):
        content_extension("volume.bin", npy)
