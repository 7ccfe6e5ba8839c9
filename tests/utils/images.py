"""Factories for test images: small brain-like phantoms written in the formats users have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage


def phantom(size: int = 96, seed: int = 0) -> np.ndarray:
    """A (size, size) float32 head-like phantom in [0, 1]: skull ring, brain, ventricles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    a, b = 0.38 + 0.04 * rng.random(), 0.30 + 0.04 * rng.random()
    r = (yy / a) ** 2 + (xx / b) ** 2
    img = np.where(r < 1, 0.9, 0.0) - np.where(r < 0.8, 0.5, 0.0)
    img += np.where(
        (yy / 0.12) ** 2 + ((xx - 0.05 * rng.standard_normal()) / 0.05) ** 2 < 1, 0.3, 0
    )
    img += 0.02 * rng.standard_normal((size, size)) * (r < 1)
    return np.clip(img, 0, 1).astype(np.float32)


def make_phantom(n: int = 128) -> np.ndarray:
    """Head-like ellipses (scalp, skull, grey and white matter, ventricles, a lesion), max 1,
    slightly blurred as a real acquisition is."""
    y, x = np.mgrid[-1 : 1 : complex(0, n), -1 : 1 : complex(0, n)]
    img = np.zeros((n, n), np.float32)
    for cy, cx, ry, rx, value in [
        (0.0, 0.0, 0.85, 0.7, 1.0),
        (0.0, 0.0, 0.78, 0.63, 0.1),
        (0.0, 0.0, 0.74, 0.59, 0.55),
        (0.0, 0.0, 0.6, 0.45, 0.75),
        (-0.1, -0.15, 0.25, 0.08, 0.2),
        (-0.1, 0.15, 0.25, 0.08, 0.2),
        (0.4, 0.0, 0.08, 0.08, 0.9),
    ]:
        img[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0] = value
    out = ndimage.gaussian_filter(img, 1.0)
    return out / out.max()


def write_png16(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 65535).astype(np.uint16)).save(path)
    return path


def write_png8(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def write_jpeg(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path, quality=95)
    return path


def dicom_dataset(
    sop_class: str | None = None,
    *,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    instance: int = 1,
    modality: str = "MR",
) -> Any:
    """A pydicom Dataset with file meta, identifiers and a fake patient, but no pixels:
    ``sop_class`` defaults to MR Image Storage; ``series_uid`` also sets the study UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class or MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if series_uid is not None:
        ds.StudyInstanceUID = series_uid + ".0"
        ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-SECRET-42"
    ds.InstanceNumber = instance
    return ds


def set_pixels_12bit(ds: Any, image: np.ndarray, rows: int | None = None) -> Any:
    """Store a [0, 1] (H, W) image as 12-bit unsigned MONOCHROME2 pixels (``rows`` overrides
    the declared size, to build inconsistent objects)."""
    ds.Rows, ds.Columns = image.shape if rows is None else (rows, rows)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.clip(image, 0, 1) * 4095).astype(np.uint16).tobytes()
    return ds


def write_dicom(path: Path, image: np.ndarray, instance: int = 1) -> Path:
    """A minimal uncompressed 16-bit MR Image Storage object."""
    ds = set_pixels_12bit(dicom_dataset(instance=instance), image)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
