"""Decoding one received DICOM file (:func:`app.ingest.decode.decode`) parses it once: the same
dataset gives the size check, the pixels and the identifiers (docs/performance.md, "Ingest:
each DICOM parsed once"); the pixel-count limit is still checked before any pixel is decoded,
and a file cut short is refused as it always was."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

import training.data.dicom_reader
from app.config import Settings
from app.ingest.decode import DecodedFile, decode
from app.ingest.errors import IngestError
from app.ingest.uploads import IncomingFile
from tests.utils.corpus import CORPUS
from tests.utils.images import dicom_dataset, phantom, set_pixels_12bit
from tests.utils.service import dicom_bytes
from training.data import read_slices

MIN_SIDE = 16  # no database: the detector's smallest side, given
UID = "1.2.826.0.1.3680043.8.498.1818"


def _dicom(syntax: str | None = None, *, frames: int = 1, rows: int | None = None) -> bytes:
    """An MR image object of ``frames`` 64x64 frames (``syntax``: compressed with it; ``rows``:
    a declared size of rows x rows put in after compressing, as a decompression bomb has)."""
    ds = dicom_dataset(series_uid=UID, sop_uid=f"{UID}.7", instance=7)
    ds.SeriesDescription = "t2_tse_tra"
    ds.ManufacturerModelName = "Prisma"
    stack = [phantom(64, seed=i) for i in range(frames)]
    set_pixels_12bit(ds, stack[0])
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.PixelData = b"".join(
            (np.clip(im, 0, 1) * 4095).astype(np.uint16).tobytes() for im in stack
        )
    if syntax == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    if rows is not None:
        ds.Rows = ds.Columns = rows
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _decode(tmp_path: Path, data: bytes, **limits: Any) -> DecodedFile:
    path = tmp_path / "upload"
    path.write_bytes(data)
    settings = Settings(data_dir=tmp_path, sweep_interval_seconds=0, **limits)
    return decode(IncomingFile("s.dcm", path), settings, min_side=MIN_SIDE)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``pydicom.dcmread`` from here on, by the function that called it."""
    calls: list[str] = []
    real = pydicom.dcmread

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(sys._getframe(1).f_code.co_name)
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    return calls


@pytest.fixture
def no_pixel_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the reader decodes any pixel."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(training.data.dicom_reader, "pixel_array", refuse)


#: case -> (the file, how many times it is parsed: a bare dataset (no preamble) is parsed once
#: more by the content sniffing, which tells it from garbage)
CASES: dict[str, tuple[Callable[[], bytes], int]] = {
    "explicit VR": (_dicom, 1),
    "multi-frame": (lambda: _dicom(frames=3), 1),
    "RLE": (lambda: _dicom("rle"), 1),
    "JPEG 2000 lossless": (lambda: _dicom("jpeg2000"), 1),
    "implicit VR, no preamble": (lambda: (CORPUS / "mr-implicit-bare.dcm").read_bytes(), 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_dicom_file_is_parsed_once(case: str, tmp_path: Path, parses: list[str]) -> None:
    make, times = CASES[case]
    data = make()
    expected = pydicom.dcmread(io.BytesIO(data), force=True)
    parses.clear()
    decoded = _decode(tmp_path, data)
    assert len(parses) == times, parses
    frames = int(expected.get("NumberOfFrames", 1) or 1)
    assert decoded.shapes == [(int(expected.Rows), int(expected.Columns))] * frames
    assert (decoded.sop_instance_uid, decoded.series_instance_uid) == (
        expected.SOPInstanceUID,
        expected.SeriesInstanceUID,
    )
    assert decoded.study_instance_uid == expected.StudyInstanceUID
    assert decoded.instance_number == int(expected.InstanceNumber)
    assert decoded.series_description == expected.get("SeriesDescription")
    assert decoded.scanner == expected.get("ManufacturerModelName")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_slices_of_a_parsed_dataset_are_those_of_the_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / "s.dcm"
    path.write_bytes(CASES[case][0]())
    own = read_slices(path)
    handed = read_slices(path, dataset=pydicom.dcmread(path, force=True))
    assert [s.meta for s in handed] == [s.meta for s in own]
    for a, b in zip(handed, own, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_a_decompression_bomb_is_refused_before_its_pixels_are_decoded(
    tmp_path: Path, parses: list[str], no_pixel_decode: None
) -> None:
    """RLE data of 64x64 pixels under a header that says 20000x20000."""
    with pytest.raises(IngestError) as refused:
        _decode(tmp_path, _dicom("rle", rows=20000))
    assert refused.value.status_code == 413
    assert "20000x20000" in refused.value.detail and "AMAQC_MAX_PIXELS" in refused.value.detail
    assert len(parses) == 1, parses


def test_a_dicom_over_the_pixel_limit_is_refused_before_its_pixels_are_decoded(
    tmp_path: Path, no_pixel_decode: None
) -> None:
    with pytest.raises(IngestError) as refused:
        _decode(tmp_path, dicom_bytes(), max_pixels=1000)
    assert refused.value.status_code == 413
    assert "64x64" in refused.value.detail and "AMAQC_MAX_PIXELS=1000" in refused.value.detail


#: max_pixels -> (status, what the refusal says)
CUT_SHORT = {
    64 * 1024 * 1024: (
        422,
        "s.dcm: unreadable DICOM file: has no pixel data (SOP class MR Image Storage) - the "
        "file may be truncated",
    ),
    1000: (413, "s.dcm: image is 64x64 = 4096 pixels, over the limit AMAQC_MAX_PIXELS=1000"),
}


@pytest.mark.parametrize("max_pixels", sorted(CUT_SHORT))
@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_a_compressed_dicom_cut_short_is_refused_as_before(tmp_path: Path, max_pixels: int) -> None:
    """pydicom keeps no element at all of a file cut short inside its encapsulated pixel data,
    yet its header alone reads: the size check still sees the header's size, and the refusal
    still names the cut."""
    data = _dicom("rle")[:-200]
    assert len(pydicom.dcmread(io.BytesIO(data), force=True)) == 0  # what is worked around
    status, words = CUT_SHORT[max_pixels]
    with pytest.raises(IngestError) as refused:
        _decode(tmp_path, data, max_pixels=max_pixels)
    assert refused.value.status_code == status
    assert refused.value.detail.startswith(words)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_decode_reads_no_slice_metadata(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: the upload keeps the pixels' shapes and its own identifiers, never the
    reader's metadata, so the reader's allow-list lookups (a sixth of a read) are skipped;
    what is decoded, and what it says, is the same."""
    data = CASES[case][0]()
    (tmp_path / "before").mkdir()
    (tmp_path / "without").mkdir()
    expected = _decode(tmp_path / "before", data)

    def refuse(*_: object) -> None:
        raise AssertionError("metadata read")

    monkeypatch.setattr(training.data.dicom_reader, "dicom_meta", refuse)
    decoded = _decode(tmp_path / "without", data)
    assert (decoded.ext, decoded.sha256, decoded.shapes) == (
        expected.ext,
        expected.sha256,
        expected.shapes,
    )
    ids = ("sop_instance_uid", "series_instance_uid", "study_instance_uid", "instance_number")
    assert [getattr(decoded, name) for name in ids] == [getattr(expected, name) for name in ids]
