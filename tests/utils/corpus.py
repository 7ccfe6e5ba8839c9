"""The seed corpus of the decoder fuzz tests (``tests/app/corpus``): small valid files of every
format ingest accepts, made from the tests' phantom (no patient data: the DICOM objects carry
the tests' made-up patient), and the header fields of each that a mutation may fill with garbage.

Regenerate the committed files (they are deterministic but for pydicom's UIDs, which are fixed
here) with ``.venv/bin/python -m tests.utils.corpus``.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np

from .images import dicom_dataset, phantom, set_pixels_12bit

CORPUS = Path(__file__).resolve().parents[1] / "app" / "corpus"
SIDE = 32  # pixels: small files, yet every slice is above the fuzz tests' smallest side (16)
_UID = "1.2.826.0.1.3680043.8.498.2020"

#: (offset, size) of a header field that a mutation may overwrite
Field = tuple[int, int]


def _dicom(syntax: str, *, instance: int = 1, preamble: bool = True) -> bytes:
    from pydicom.uid import RLELossless

    ds = dicom_dataset(
        series_uid=_UID, sop_uid=f"{_UID}.{instance}.{len(syntax)}", instance=instance
    )
    set_pixels_12bit(ds, phantom(SIDE, seed=instance))
    if syntax == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax == "implicit":
        from pydicom.uid import ImplicitVRLittleEndian

        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True, implicit_vr=syntax == "implicit")
    else:  # a bare dataset: no preamble, no "DICM", no file meta (some PACS exports)
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        bare = DicomBytesIO()
        bare.is_little_endian, bare.is_implicit_VR = True, True
        write_dataset(bare, ds)
        return bare.getvalue()
    return buffer.getvalue()


def _png() -> bytes:
    from PIL import Image

    image = (phantom(SIDE, seed=3) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    from PIL import Image

    image = (phantom(SIDE, seed=4) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _nifti() -> bytes:
    import nibabel as nib

    volume = np.stack([phantom(SIDE, seed=s) for s in (5, 6)], axis=-1)
    img = nib.Nifti1Image((volume * 1000).astype(np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    return bytes(img.to_bytes())


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def seeds() -> dict[str, bytes]:
    """File name -> bytes of every seed (the name's extension is what a client would send)."""
    nifti = _nifti()
    return {
        "mr.dcm": _dicom("explicit"),
        "mr-implicit-bare.dcm": _dicom("implicit", instance=2, preamble=False),
        "mr-rle.dcm": _dicom("rle", instance=3),
        "mr16.png": _png(),
        "mr.jpg": _jpeg(),
        "vol.nii": nifti,
        "vol.nii.gz": gzip.compress(nifti, mtime=0),
        "series.zip": _zip(
            {"a/1.dcm": _dicom("explicit", instance=7), "a/2.png": _png(), "b/v.nii": nifti}
        ),
    }


def dicom_fields(data: bytes) -> list[Field]:
    """The length and value of the image-describing elements of a little endian file (Rows,
    Columns, bit depths, frames, photometric interpretation, transfer syntax, ...)."""
    tags = [
        (0x0002, 0x0010),  # TransferSyntaxUID
        (0x0008, 0x0016),  # SOPClassUID
        (0x0028, 0x0002),  # SamplesPerPixel
        (0x0028, 0x0004),  # PhotometricInterpretation
        (0x0028, 0x0008),  # NumberOfFrames (absent unless added)
        (0x0028, 0x0010),  # Rows
        (0x0028, 0x0011),  # Columns
        (0x0028, 0x0100),  # BitsAllocated
        (0x0028, 0x0101),  # BitsStored
        (0x0028, 0x0102),  # HighBit
        (0x0028, 0x0103),  # PixelRepresentation
        (0x7FE0, 0x0010),  # PixelData
    ]
    fields: list[Field] = []
    for group, element in tags:
        at = data.find(struct.pack("<HH", group, element))
        if at < 0:
            continue
        vr = data[at + 4 : at + 6]
        if not (vr.isalpha() and vr.isupper()):  # implicit VR: a 4-byte length, then the value
            (length,) = struct.unpack("<I", data[at + 4 : at + 8])
            fields += [(at + 4, 4), (at + 8, min(length, 8, len(data) - at - 8))]
        elif vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            fields.append((at + 8, 4))
            fields.append((at + 12, min(8, len(data) - at - 12)))
        else:
            (length,) = struct.unpack("<H", data[at + 6 : at + 8])
            fields.append((at + 6, 2))
            fields.append((at + 8, length))
    return fields


def png_fields() -> list[Field]:
    """IHDR: width, height, bit depth, colour type, compression, filter, interlace."""
    return [(16, 4), (20, 4), (24, 1), (25, 1), (26, 1), (27, 1), (28, 1), (33, 4)]


def nifti_fields() -> list[Field]:
    """NIfTI-1: sizeof_hdr, dim[0..7], datatype, bitpix, pixdim, vox_offset, scl_slope,
    scl_inter, qform/sform codes, quaternions, srow, magic."""
    fields = [(0, 4), (70, 2), (72, 2), (108, 4), (112, 4), (116, 4), (252, 2), (254, 2)]
    fields += [(40 + 2 * i, 2) for i in range(8)]
    fields += [(76 + 4 * i, 4) for i in range(8)]
    fields += [(256 + 4 * i, 4) for i in range(6)] + [(280 + 4 * i, 4) for i in range(12)]
    return [*fields, (344, 4)]


def zip_fields(data: bytes) -> list[Field]:
    """Every local header, central directory entry and the end record: methods, sizes,
    CRCs, name and extra lengths, attributes, offsets."""
    fields: list[Field] = []
    for at in _all(data, b"PK\x03\x04"):
        fields += [(at + o, n) for o, n in ((6, 2), (8, 2), (14, 4), (18, 4), (22, 4))]
        fields += [(at + 26, 2), (at + 28, 2)]
    for at in _all(data, b"PK\x01\x02"):
        fields += [(at + o, n) for o, n in ((10, 2), (16, 4), (20, 4), (24, 4), (28, 2))]
        fields += [(at + o, n) for o, n in ((30, 2), (32, 2), (38, 4), (42, 4))]
    for at in _all(data, b"PK\x05\x06"):
        fields += [(at + o, n) for o, n in ((8, 2), (10, 2), (12, 4), (16, 4), (20, 2))]
    return fields


def _all(data: bytes, magic: bytes) -> list[int]:
    found, at = [], data.find(magic)
    while at >= 0:
        found.append(at)
        at = data.find(magic, at + 1)
    return found


def fields_of(name: str, data: bytes) -> list[Field]:
    """The header fields of seed ``name`` (a .nii.gz: of the NIfTI inside it)."""
    if name.endswith(".dcm"):
        return dicom_fields(data)
    if name.endswith(".png"):
        return png_fields()
    if name.endswith((".nii", ".nii.gz")):
        return nifti_fields()
    if name.endswith(".zip"):
        return zip_fields(data)
    return [(2, 2), (4, 2), (6, 16)]  # JPEG: the first segment's marker, length, payload


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (CORPUS / name).write_bytes(data)
        print(f"{CORPUS / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
