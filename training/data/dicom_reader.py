"""DICOM images to 2-D float32 arrays in the modality's units.

Uses pydicom 3's ``pydicom.pixels`` backend, which decodes the compressed transfer syntaxes
MR scanners and PACS actually send (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE)
through the pylibjpeg plugins. Multi-frame objects give one array per frame; RescaleSlope/
Intercept (top-level or per-frame functional groups) are applied; MONOCHROME1 is inverted so
that high values are bright as in MONOCHROME2; colour is reduced to luminance.

Only non-identifying attributes are copied into the metadata: an allow-list, never the patient
module (name, ID, birth date, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from model.acquisition import from_header

from .image_types import UnreadableImage

FloatArray = npt.NDArray[np.float32]

# pydicom keyword -> metadata key. An allow-list on purpose: nothing from the patient module.
_META_KEYWORDS = {
    "Modality": "modality",
    "SeriesDescription": "series_description",
    "SeriesNumber": "series_number",
    "InstanceNumber": "instance_number",
    "BitsStored": "bits_stored",
    "PhotometricInterpretation": "photometric",
    "PixelSpacing": "pixel_spacing",
    "SliceThickness": "slice_thickness",
    "MagneticFieldStrength": "field_strength",
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def has_pixel_data(ds: Dataset) -> bool:
    """Whether a DICOM dataset carries pixel data (integer, float or double float)."""
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


# ITU-R BT.601 luma weights, the same as PIL's RGB -> "L".
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(rgb: np.ndarray) -> FloatArray:
    """(..., 3) RGB -> (...) float32 luminance, BT.601 weights, no rounding."""
    rgb = rgb.astype(np.float64)
    r, g, b = LUMA_WEIGHTS
    return (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]).astype(np.float32)


def read_dicom(
    path: Path, *, force: bool = False, dataset: Dataset | None = None, meta: bool = True
) -> tuple[list[FloatArray], dict[str, str]]:
    """Decode every frame of the DICOM file ``path``.

    Returns one (rows, columns) float32 array per frame and the shared metadata. ``force``
    reads files that lack the 128-byte preamble + ``DICM`` (old ACR-NEMA style exports).
    ``dataset``: ``path`` already read whole (``pydicom.dcmread(path, force=True)``, pixel
    data included, not decoded), used instead of reading the file again. ``meta=False``: an
    empty metadata dict (the pixels alone are wanted).
    Library errors propagate; the caller turns them into :class:`UnreadableImage`.
    """
    ds = pydicom.dcmread(path, force=force) if dataset is None else dataset
    if not has_pixel_data(ds):
        raise _no_pixel_data(path, ds)
    if "TransferSyntaxUID" not in ds.file_meta:
        # A file without meta information: pydicom knows how it parsed it.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    n_frames = int(_number(ds.get("NumberOfFrames"), 1))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    # as_rgb (the default) already turns YBR_* colour into RGB.
    arr = np.asarray(pixel_array(ds))
    if n_frames <= 1:
        arr = arr[np.newaxis]
    if photometric == "PALETTE COLOR":
        frames = list(luminance(apply_color_lut(arr, ds)))
    elif int(_number(ds.get("SamplesPerPixel"), 1)) >= 3 or arr.ndim == 4:
        frames = list(luminance(arr))
    else:
        frames = [
            _to_modality_units(arr[i], ds, i, invert=photometric == "MONOCHROME1")
            for i in range(arr.shape[0])
        ]
    return frames, dicom_meta(ds) if meta else {}


def count_dicom_frames(path: Path, *, force: bool = False) -> int:
    """Number of frames in ``path`` from its header (large values are not loaded)."""
    ds = pydicom.dcmread(path, force=force, defer_size="64 KB")
    if not has_pixel_data(ds):
        raise _no_pixel_data(path, ds)
    if int(_number(ds.get("Rows"), 0)) < 1 or int(_number(ds.get("Columns"), 0)) < 1:
        raise UnreadableImage(f"{path.name}: Rows/Columns missing or zero")
    return max(int(_number(ds.get("NumberOfFrames"), 1)), 1)


def looks_like_dicom(path: Path, *, dataset: Dataset | None = None) -> bool:
    """True when a file without the DICM preamble still parses as a DICOM image object
    (``dataset``: ``path`` already read, as for :func:`read_dicom`)."""
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True) if dataset is None else dataset
    return "SOPClassUID" in ds and "Rows" in ds and "Columns" in ds


def _no_pixel_data(path: Path, ds: Dataset) -> UnreadableImage:
    name = sop_class_name(ds)
    # pydicom stops quietly at end of file: an image object without pixels was cut short
    hint = " - the file may be truncated" if name == "unknown" or "Image Storage" in name else ""
    return UnreadableImage(f"{path.name}: has no pixel data (SOP class {name}){hint}")


def sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    return UID(str(uid)).name if uid else "unknown"


def dicom_meta(ds: Dataset) -> dict[str, str]:
    meta = {"format": "dicom", "sop_class": sop_class_name(ds)}
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax:
        meta["transfer_syntax"] = UID(str(syntax)).name
    for keyword, key in _META_KEYWORDS.items():
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            meta[key] = _meta_str(value)
    acquisition = from_header(ds)  # echo-planar or not: which threshold a series gets
    if acquisition is not None:
        meta["acquisition"] = acquisition
    return meta


def _to_modality_units(raw: np.ndarray, ds: Dataset, frame: int, *, invert: bool) -> FloatArray:
    """Stored values -> modality units (rescale or LUT); MONOCHROME1 -> high = bright."""
    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
        slope, intercept = 1.0, 0.0  # the LUT output range is inverted below
    else:
        slope, intercept = _rescale(ds, frame)
        if (slope, intercept) == (1.0, 0.0) and not invert and _exact_in_float32(raw):
            # no rescale (most MR): the float64 steps below would give these same values
            return raw.astype(np.float32)
        # float64 so that e.g. 0.5 * v - 1024 is exact before the final cast
        values = raw.astype(np.float64) * slope + intercept
    if invert:
        if raw.dtype.kind == "f" or "ModalityLUTSequence" in ds:
            low, high = float(values.min()), float(values.max())
        else:
            # Invert within the representable range, not this frame's range, so that every
            # slice of a series maps the same stored value to the same output value.
            bits = int(_number(ds.get("BitsStored") or ds.get("BitsAllocated"), 16))
            signed = int(_number(ds.get("PixelRepresentation"), 0)) == 1
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            low, high = sorted((lo * slope + intercept, hi * slope + intercept))
        values = (low + high) - values
    return values.astype(np.float32)


def _exact_in_float32(raw: np.ndarray) -> bool:
    """Integers of at most 16 bits: every value is exact in float32 (24-bit significand)."""
    return raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2


def _rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """(slope, intercept) for ``frame``: per-frame group, then shared group, then top level.

    Enhanced (multi-frame) MR objects keep them in the Pixel Value Transformation Sequence of
    the functional groups instead of the top-level RescaleSlope/RescaleIntercept.
    """
    candidates: list[Any] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        candidates.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        candidates.append(shared[0])
    for group in candidates:
        transform = group.get("PixelValueTransformationSequence")
        if transform:
            item = transform[0]
            return _number(item.get("RescaleSlope"), 1.0), _number(
                item.get("RescaleIntercept"), 0.0
            )
    return _number(ds.get("RescaleSlope"), 1.0), _number(ds.get("RescaleIntercept"), 0.0)


def _number(value: Any, default: float) -> float:
    """A DS/IS/US value as float; ``default`` when absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return float(value)


def _meta_str(value: Any) -> str:
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()
