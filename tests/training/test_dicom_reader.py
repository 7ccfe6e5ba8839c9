"""DICOM input: values in modality units, every common transfer syntax, broken objects.

Every DICOM here is built with pydicom 3 in tmp_path. Compressed ones use pydicom's own
encoders (RLE natively, JPEG 2000 via pylibjpeg-openjpeg, JPEG-LS via pyjpegls), PIL for
JPEG baseline, and a tiny JPEG lossless (process 14, SV1) encoder below, since no installed
library writes that syntax.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.encoders.base import JPEGLSLosslessEncoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    EnhancedMRImageStorage,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from tests.utils.images import dicom_dataset
from training.data.io import UnreadableImage, count_slices, read_slices

RNG = np.random.default_rng(0)


def mr_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int = 16,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    sop_class: UID = MRImageStorage,
) -> Dataset:
    """An MR Image Storage dataset holding ``pixels``: (H, W) or (frames, H, W), 16-bit."""
    ds = dicom_dataset(sop_class, instance=7)
    ds.PatientID = "PID-4711"
    ds.PatientBirthDate = "19800101"
    ds.SeriesDescription = "t2_tse_tra"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def stack(frames: int = 3, shape: tuple[int, int] = (64, 48), high: int = 4096) -> np.ndarray:
    return RNG.integers(0, high, (frames, *shape)).astype(np.uint16)


# --- uncompressed values -------------------------------------------------------------------


def test_unsigned_16_bit_values_are_kept_exactly(tmp_path: Path) -> None:
    pixels = np.array([[0, 1, 255], [256, 40000, 65535]], dtype=np.uint16)
    (s,) = read_slices(save(mr_dataset(pixels), tmp_path / "u16.dcm"))
    assert s.pixels.dtype == np.float32 and s.pixels.shape == (2, 3)
    np.testing.assert_array_equal(s.pixels, pixels)


def test_signed_pixels_get_rescale_slope_and_intercept_exactly(tmp_path: Path) -> None:
    raw = np.array([[-32768, -1, 0], [1, 2047, 32767]], dtype=np.int16)
    ds = mr_dataset(raw, signed=True)
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"
    (s,) = read_slices(save(ds, tmp_path / "s16.dcm"))
    np.testing.assert_array_equal(s.pixels, raw.astype(np.float64) * 0.5 - 1024)


class _Conversions(np.ndarray):
    """An array that notes the dtype of every ``astype`` asked of it."""

    asked: list[np.dtype]

    def astype(self, dtype, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        _Conversions.asked.append(np.dtype(dtype))
        return np.asarray(self).astype(dtype, *args, **kwargs)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_pixels_without_rescale_skip_the_float64_steps(dtype: type) -> None:
    """Issue 18 (the worker reads every stored slice again): with no rescale, integers of up to
    16 bits go to float32 in one step, the same values the float64 steps give."""
    from training.data.dicom_reader import _to_modality_units

    info = np.iinfo(dtype)
    raw = np.array([[info.min, -1 if info.min else 0, 0], [1, info.max - 1, info.max]], dtype)
    _Conversions.asked = []
    out = _to_modality_units(raw.view(_Conversions), Dataset(), 0, invert=False)
    assert _Conversions.asked == [np.dtype(np.float32)]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, (raw.astype(np.float64) * 1.0 + 0.0).astype(np.float32))
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"  # a rescale still takes them
    _Conversions.asked = []
    out = _to_modality_units(raw.view(_Conversions), ds, 0, invert=False)
    assert np.dtype(np.float64) in _Conversions.asked
    np.testing.assert_array_equal(out, (raw.astype(np.float64) - 1024).astype(np.float32))


def test_monochrome1_is_inverted_within_the_stored_range(tmp_path: Path) -> None:
    raw = np.array([[0, 100], [2000, 4095]], dtype=np.uint16)
    ds = mr_dataset(raw, bits_stored=12, photometric="MONOCHROME1")
    (s,) = read_slices(save(ds, tmp_path / "m1.dcm"))
    np.testing.assert_array_equal(s.pixels, 4095 - raw.astype(np.float32))


def test_monochrome1_inversion_follows_the_rescale(tmp_path: Path) -> None:
    raw = np.array([[0, 4095]], dtype=np.uint16)
    ds = mr_dataset(raw, bits_stored=12, photometric="MONOCHROME1")
    ds.RescaleSlope, ds.RescaleIntercept = 2, 10  # range 10..8200
    (s,) = read_slices(save(ds, tmp_path / "m1r.dcm"))
    np.testing.assert_array_equal(s.pixels, [[8200, 10]])


def test_multi_frame_gives_one_slice_per_frame(tmp_path: Path) -> None:
    pixels = stack(4, (8, 6))
    path = save(mr_dataset(pixels), tmp_path / "multi.dcm")
    slices = read_slices(path)
    assert [s.index for s in slices] == [0, 1, 2, 3] == [int(s.meta["frame"]) for s in slices]
    for s, frame in zip(slices, pixels, strict=True):
        np.testing.assert_array_equal(s.pixels, frame)
    assert count_slices(path) == 4


def test_enhanced_mr_per_frame_rescale_is_applied(tmp_path: Path) -> None:
    pixels = stack(2, (4, 4))
    ds = mr_dataset(pixels, sop_class=EnhancedMRImageStorage)
    groups = []
    for slope, intercept in [(1.0, 0.0), (2.5, -100.0)]:
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        transform.RescaleType = "US"
        group = Dataset()
        group.PixelValueTransformationSequence = Sequence([transform])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    first, second = read_slices(save(ds, tmp_path / "enhanced.dcm"))
    np.testing.assert_array_equal(first.pixels, pixels[0])
    np.testing.assert_array_equal(second.pixels, pixels[1] * 2.5 - 100)


def test_rgb_dicom_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [90, 90, 90]]], dtype=np.uint8)
    ds = mr_dataset(np.zeros((2, 2), np.uint16))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    (s,) = read_slices(save(ds, tmp_path / "rgb.dcm"))
    np.testing.assert_allclose(s.pixels, [[0.299 * 255, 0.587 * 255], [0.114 * 255, 90]], 1e-5)


def test_colour_jpeg_baseline_becomes_luminance(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(buffer, "JPEG", quality=95)
    ds = mr_dataset(np.zeros((32, 32), np.uint16))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    (s,) = read_slices(save(ds, tmp_path / "colour.dcm"))
    assert s.pixels.shape == (32, 32) and np.abs(s.pixels - grey).max() <= 4


def test_metadata_is_useful_and_never_identifies_the_patient(tmp_path: Path) -> None:
    ds = mr_dataset(stack(1, (4, 4))[0], bits_stored=12)
    (s,) = read_slices(save(ds, tmp_path / "meta.dcm"))
    assert s.meta["modality"] == "MR"
    assert s.meta["series_description"] == "t2_tse_tra"
    assert s.meta["instance_number"] == "7"
    assert s.meta["bits_stored"] == "12"
    assert s.meta["photometric"] == "MONOCHROME2"
    text = repr(s.meta)
    assert "Doe" not in text and "PID-4711" not in text and "19800101" not in text


def test_file_without_preamble_is_still_read(tmp_path: Path) -> None:
    pixels = stack(1, (4, 5))[0]
    ds = mr_dataset(pixels)
    del ds.file_meta
    path = tmp_path / "IM0001"  # no suffix, no preamble, implicit VR: an old export
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    (s,) = read_slices(path)
    np.testing.assert_array_equal(s.pixels, pixels)
    assert s.meta["transfer_syntax"] == ImplicitVRLittleEndian.name


# --- compressed transfer syntaxes --------------------------------------------------------


def jpeg_lossless_sv1(image: np.ndarray, precision: int) -> bytes:
    """Encode a (H, W) unsigned image as JPEG lossless, process 14, predictor 1 (ITU T.81 H).

    One Huffman table with all 17 difference categories at 5 bits; enough to make valid
    streams for the decoder under test, not a good compressor.
    """
    rows, cols = image.shape
    out = bytearray(b"\xff\xd8")
    bits = [0] * 16
    bits[4] = 17  # 17 codes of length 5: 00000 .. 10000
    out += b"\xff\xc4" + (2 + 1 + 16 + 17).to_bytes(2, "big") + b"\x00" + bytes(bits)
    out += bytes(range(17))
    out += b"\xff\xc3\x00\x0b" + bytes([precision]) + rows.to_bytes(2, "big")
    out += cols.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    out += b"\xff\xda\x00\x08\x01\x01\x00\x01\x00\x00"  # Ss=1 (predictor Ra), Se=0, Pt=0
    acc, n_acc, data = 0, 0, bytearray()

    def put(value: int, length: int) -> None:
        nonlocal acc, n_acc
        acc, n_acc = (acc << length) | (value & ((1 << length) - 1)), n_acc + length
        while n_acc >= 8:
            n_acc -= 8
            byte = (acc >> n_acc) & 0xFF
            data.append(byte)
            if byte == 0xFF:
                data.append(0)  # byte stuffing

    x = image.astype(np.int64)
    for r in range(rows):
        for c in range(cols):
            if r == 0 and c == 0:
                pred = 1 << (precision - 1)
            elif c == 0:
                pred = int(x[r - 1, 0])
            else:
                pred = int(x[r, c - 1])
            diff = (int(x[r, c]) - pred) % 65536
            diff = diff - 65536 if diff >= 32768 else diff
            ssss = 16 if diff == -32768 else abs(diff).bit_length()
            put(ssss, 5)
            if 0 < ssss < 16:
                put(diff if diff > 0 else diff - 1, ssss)
    if n_acc:
        put((1 << (8 - n_acc)) - 1, 8 - n_acc)  # pad with 1-bits
    return bytes(out + data + b"\xff\xd9")


def compress_jpeg_lossless(ds: Dataset, frames: np.ndarray) -> None:
    encoded = [jpeg_lossless_sv1(f, int(ds.BitsStored)) for f in frames]
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1


@pytest.mark.parametrize(
    "syntax",
    [RLELossless, JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1],
    ids=["rle", "jpeg2000-lossless", "jpeg-ls-lossless", "jpeg-lossless-sv1"],
)
def test_lossless_transfer_syntaxes_decode_exactly(tmp_path: Path, syntax: UID) -> None:
    if syntax == JPEGLSLossless and not JPEGLSLosslessEncoder.is_available:
        pytest.skip("writing JPEG-LS needs pyjpegls")
    pixels = stack(2, (64, 48))
    ds = mr_dataset(pixels, bits_stored=12)
    if syntax == JPEGLosslessSV1:
        compress_jpeg_lossless(ds, pixels)
    else:
        ds.compress(syntax)
    path = save(ds, tmp_path / "compressed.dcm")
    slices = read_slices(path)
    assert [s.meta["transfer_syntax"] for s in slices] == [syntax.name] * 2
    for s, frame in zip(slices, pixels, strict=True):
        np.testing.assert_array_equal(s.pixels, frame)
    assert count_slices(path) == 2


def test_jpeg_lossless_encoder_covers_extreme_differences(tmp_path: Path) -> None:
    pixels = np.array([[0, 65535, 0, 32768], [65535, 0, 1, 65534]], dtype=np.uint16)
    ds = mr_dataset(pixels)
    compress_jpeg_lossless(ds, pixels[np.newaxis])
    (s,) = read_slices(save(ds, tmp_path / "extreme.dcm"))
    np.testing.assert_array_equal(s.pixels, pixels)


def test_jpeg_baseline_decodes_close_to_the_original(tmp_path: Path) -> None:
    y, x = np.mgrid[0:32, 0:32]
    image = (4 * x + 2 * y).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=95)
    ds = mr_dataset(image.astype(np.uint16), bits_stored=8)
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    (s,) = read_slices(save(ds, tmp_path / "baseline.dcm"))
    assert np.abs(s.pixels - image).max() <= 4


# --- objects that are not images, and broken files ------------------------------------------


def test_structured_report_has_no_pixel_data(tmp_path: Path) -> None:
    ds = mr_dataset(np.zeros((2, 2), np.uint16), sop_class=BasicTextSRStorage)
    del ds.PixelData
    path = save(ds, tmp_path / "report.dcm")
    expected = "report.dcm: has no pixel data (SOP class Basic Text SR Storage)"
    with pytest.raises(UnreadableImage, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_slices(path)
    with pytest.raises(UnreadableImage, match="has no pixel data"):
        count_slices(path)


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.95])
def test_truncated_file_is_unreadable_not_a_crash(tmp_path: Path, keep: float) -> None:
    path = save(mr_dataset(stack(1, (32, 32))[0]), tmp_path / "cut.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(UnreadableImage, match=r"^cut\.dcm: "):
        read_slices(path)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_truncated_compressed_frame_is_unreadable(tmp_path: Path) -> None:
    ds = mr_dataset(stack(1, (64, 48))[0], bits_stored=12)
    ds.compress(JPEG2000Lossless)
    path = save(ds, tmp_path / "cut_j2k.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(UnreadableImage, match=r"^cut_j2k\.dcm: "):
        read_slices(path)
