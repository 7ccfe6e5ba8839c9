"""The file signatures (magic bytes) of the image formats amaqc reads, in one table for the
dataset readers (:mod:`training.data.readers`) and the upload sniffer (``app.ingest.sniff``):
DICOM "DICM" at byte 128 (after the preamble), PNG, JPEG, gzip, NIfTI-1 "n+1" at 344, NIfTI-2
"n+2" at 4 and NumPy's .npy. A bare DICOM dataset (no preamble) has no signature; the callers
ask pydicom about it."""

from __future__ import annotations

from typing import Final, Literal

Signature = Literal["dicom", "png", "jpeg", "gzip", "nifti", "npy"]

#: bytes to read for :func:`signature` (a NIfTI-2 header; covers DICM at 128, NIfTI-1 at 344
#: and tar's magic at 257, which the sniffer names)
HEAD: Final = 540

_PREFIXES: Final[tuple[tuple[bytes, Signature], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x1f\x8b", "gzip"),
    (b"\x93NUMPY", "npy"),
)


def signature(head: bytes) -> Signature | None:
    """The format a file's first bytes (up to :data:`HEAD`) announce, or None."""
    if head[128:132] == b"DICM":
        return "dicom"
    for prefix, name in _PREFIXES:
        if head.startswith(prefix):
            return name
    return "nifti" if is_nifti(head) else None


def is_nifti(head: bytes) -> bool:
    """A NIfTI-1 single-file ("n+1" at 344) or NIfTI-2 ("n+2" at 4) header."""
    return head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00"
