"""Factories for the DICOMweb tests: STOW-RS bodies and headers, and a non-image (SR) object."""

from __future__ import annotations

import io

from pydicom.dataset import Dataset

from .images import dicom_dataset, phantom
from .service import dicom_bytes

BOUNDARY = "0f3cf5c0-70e0-41ef-baef-c6f9f65ec3e1"
STUDIES = "/dicomweb/studies"


def stow_body(
    parts: list[bytes], *, boundary: str = BOUNDARY, preamble: bytes = b"", epilogue: bytes = b""
) -> bytes:
    """A multipart/related body with one application/dicom part per item of ``parts``."""
    out = io.BytesIO()
    out.write(preamble)
    for i, data in enumerate(parts):
        out.write(b"\r\n" if i or preamble else b"")
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(data)
    out.write(f"\r\n--{boundary}--".encode() + epilogue)
    return out.getvalue()


def stow_headers(
    auth: dict[str, str], *, boundary: str = BOUNDARY, quoted: bool = True
) -> dict[str, str]:
    shown = f'"{boundary}"' if quoted else boundary
    return {
        **auth,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={shown}',
    }


def as_dataset(data: bytes) -> Dataset:
    import pydicom

    return pydicom.dcmread(io.BytesIO(data))


def mr_dataset(series_uid: str, instance: int, size: int = 64) -> Dataset:
    """A (size, size) 16-bit MR Image Storage instance, as dicomweb-client takes it."""
    image = phantom(size, seed=instance)
    return as_dataset(dicom_bytes(image, series_uid=series_uid, instance=instance))


def sr_dataset(series_uid: str = "1.2.826.0.1.3680043.8.498.99") -> Dataset:
    """A Basic Text SR: a valid DICOM object that is not an image."""
    from pydicom.uid import BasicTextSRStorage

    ds = dicom_dataset(BasicTextSRStorage, series_uid=series_uid, modality="SR")
    del ds.InstanceNumber
    ds.ValueType = "CONTAINER"
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_transfer_syntax(uid: str) -> bytes:
    """An MR instance whose (encapsulated) pixel data claims transfer syntax ``uid``."""
    from pydicom.encaps import encapsulate

    ds = as_dataset(dicom_bytes())
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)
