"""What a received file is, from its bytes, never from its name.

:func:`content_extension` gives the format an upload is decoded as (the extension it is stored
under); anything else is a 422 naming the file, the formats accepted and what was found:
"notes.txt: found plain text; expected DICOM, PNG, JPEG or NIfTI (.nii, .nii.gz) files, or one
ZIP of them". File signatures: DICOM "DICM" at byte 128 (or a bare dataset that parses as one),
PNG, JPEG, gzip (accepted when it holds a NIfTI), NIfTI-1 "n+1" at 344, NIfTI-2 "n+2" at 4;
other image formats are named by pillow.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path

from .errors import IngestError

#: what the ingest routes accept, as every refusal words it (a ZIP holds the first kind)
IMAGE_FORMATS = "DICOM, PNG, JPEG or NIfTI (.nii, .nii.gz) files"
ACCEPTED = f"{IMAGE_FORMATS}, or one ZIP of them"
#: the stored extension -> the format's name in messages
FORMAT_NAMES = {
    ".dcm": "DICOM",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI (gzip)",
}

ZIP_MAGIC = b"PK\x03\x04"

_HEAD = 540  # a NIfTI-2 header; also covers DICM at 128, NIfTI-1 at 344 and tar's magic at 257
_IMAGE = "save the slice as PNG or DICOM"
_ARCHIVE = "send the files themselves, or one ZIP of them"
_PACKED = "send the files uncompressed; only a NIfTI may be gzipped"
#: first bytes -> (what they are, how to send it instead)
_SIGNATURES: tuple[tuple[bytes, str, str | None], ...] = (
    (b"GIF87a", "a GIF image", _IMAGE),
    (b"GIF89a", "a GIF image", _IMAGE),
    (b"II*\x00", "a TIFF image", _IMAGE),
    (b"MM\x00*", "a TIFF image", _IMAGE),
    (b"%PDF", "a PDF document", None),
    (b"\x93NUMPY", "a NumPy .npy array", "save the slice as PNG, or the volume as NIfTI"),
    (ZIP_MAGIC, "a ZIP archive", "a ZIP may not be inside another, nor beside other files"),
    (b"PK\x05\x06", "an empty ZIP archive", None),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive", _ARCHIVE),
    (b"Rar!\x1a\x07", "a RAR archive", _ARCHIVE),
    (b"BZh", "bzip2-compressed data", _PACKED),
    (b"\xfd7zXZ\x00", "xz-compressed data", _PACKED),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", _PACKED),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file", None),
    (b"\x1f\x8b", "gzip-compressed data", _PACKED),
)
Found = tuple[str, str | None]  # what the bytes are, and how to send them instead (or None)


def content_extension(name: str, path: Path, expected: str = ACCEPTED) -> str:
    """``.dcm``, ``.png``, ``.jpg``, ``.nii`` or ``.nii.gz`` from the bytes of ``path``.

    Raises:
        IngestError: 422 naming ``name``, the ``expected`` formats and what the bytes are.
    """
    with path.open("rb") as fh:
        head = fh.read(_HEAD)
    ext = _accepted(head) or (".dcm" if _bare_dicom(path) else None)
    if ext == ".nii.gz" and not _is_nifti(_gunzip_head(path)):
        raise IngestError(422, refusal(name, _gzip_holding(path), expected))
    if ext is None:
        raise IngestError(422, refusal(name, describe(head, path), expected))
    return ext


def is_dicom(path: Path) -> bool:
    """Whether ``path`` is a DICOM file (with the "DICM" preamble or a bare dataset)."""
    with path.open("rb") as fh:
        head = fh.read(_HEAD)
    return head[128:132] == b"DICM" or (_accepted(head) is None and _bare_dicom(path))


def found_in(path: Path) -> Found:
    """:func:`describe` of a whole file, for a caller that expects one format only."""
    with path.open("rb") as fh:
        return describe(fh.read(_HEAD), path)


def refusal(name: str, found: Found, expected: str = ACCEPTED) -> str:
    """The message for a file that is none of the ``expected`` formats."""
    what, hint = found
    return f"{name}: found {what}; expected {expected}" + (f" ({hint})" if hint else "")


def describe(head: bytes, path: Path | None = None) -> Found:
    """What bytes that are not an accepted format are ("a GIF image", "plain text",
    "unrecognised bytes starting 0x0011...") and how to send them instead; ``path``: the whole
    file, for pillow (some formats keep their header at the end)."""
    if not head:
        return "an empty file (0 bytes)", None
    if head[344:348] == b"ni1\x00":
        return "a NIfTI-1 header without its image (the .hdr of a .hdr/.img pair)", (
            "send the volume as one .nii or .nii.gz file"
        )
    if head[257:262] == b"ustar":
        return "a tar archive", _ARCHIVE
    for magic, what, hint in _SIGNATURES:
        if head.startswith(magic):
            return what, hint
    image = _pillow_format(path if path is not None else io.BytesIO(head))
    if image:
        return f"a {image} image", _IMAGE
    return _text_kind(head) or f"unrecognised bytes starting 0x{head[:8].hex()}", None


#: signature -> the extension an accepted upload is stored under (a gzip must hold a NIfTI)
_STORED_AS = {"dicom": ".dcm", "png": ".png", "jpeg": ".jpg", "gzip": ".nii.gz", "nifti": ".nii"}


def _accepted(head: bytes) -> str | None:
    # imported here, not at start-up: training.data loads on the first upload (decode reads
    # with it), as before the signatures were shared
    from training.data.signatures import signature

    found = signature(head)
    return _STORED_AS.get(found) if found is not None else None


def _is_nifti(head: bytes) -> bool:
    from training.data.signatures import is_nifti

    return is_nifti(head)


def _bare_dicom(path: Path) -> bool:
    """A DICOM dataset without the 128-byte preamble and "DICM" (some PACS exports): it must
    parse and carry a SOP Class UID or an image size."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, defer_size=1024)
        return "SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)
    except Exception:  # random bytes make pydicom fail in many ways
        return False


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(_HEAD)
    except (OSError, EOFError, ValueError, zlib.error):  # zlib: a damaged deflate block
        return b""


def _gzip_holding(path: Path) -> Found:
    inner = _gunzip_head(path)
    if not inner:
        return "gzip-compressed data that cannot be unpacked", None
    ext = _accepted(inner)
    if ext in (".dcm", ".png", ".jpg"):
        return f"a gzip-compressed {FORMAT_NAMES[ext]} file", _PACKED
    what, _ = describe(inner)
    return f"gzip-compressed data holding {what}, not a NIfTI", _PACKED


def _pillow_format(source: Path | io.BytesIO) -> str | None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as img:
                return str(img.format) if img.format else None
    except Exception:  # not an image pillow knows (or a bomb: not ours to decode here)
        return None


def _text_kind(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the head
            return None
        text = head[: exc.start].decode("utf-8")
    if not text or any(not (c.isprintable() or c in "\t\r\n") for c in text):
        return None
    start = text.lstrip("\ufeff \t\r\n")[:1]
    if start == "<":
        return "text (HTML or XML)"
    if start in ("{", "["):
        return "text (JSON)"
    return "plain text"
