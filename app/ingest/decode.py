"""Decode and validate one received file with ``training.data.readers`` (torch-free).

The format comes from the content; the pixel count is checked from the header before any
pixel is decoded (PNG bombs, huge DICOM/NIfTI), then every slice is decoded so that a bad file
is refused before anything is stored. A DICOM file is parsed once: the same dataset gives the
size check, the pixels and the identifiers (a file that does not parse whole is looked at as
before, step by step, so that its refusal says the same).
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from app.config import Settings

from . import judgeable, limits, sniff
from .errors import IngestError, NonImageObject
from .uploads import IncomingFile

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class DecodedFile:
    """A validated file: its content extension, SHA-256, slice shapes and DICOM identifiers."""

    source: IncomingFile
    path: Path
    ext: str
    sha256: str
    shapes: list[tuple[int, int]]
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    instance_number: int | None = None
    series_description: str | None = None
    scanner: str | None = None


def decode(
    incoming: IncomingFile,
    settings: Settings,
    *,
    min_side: int | None = None,
    dataset: Dataset | None = None,
) -> DecodedFile:
    """Validate ``incoming`` completely; raise :class:`IngestError` naming the file.

    ``min_side``: the smallest slice side the detector can judge (default: the active model's
    patch size, looked up in the database). ``dataset``: the file as :func:`parse_dicom` read
    it, when the caller read it already (STOW-RS looks at its header first); used only when the
    content is DICOM, else the file is parsed here.
    """
    from app.storage import sha256_file
    from training.data import UnreadableImage, read_slices

    expected = sniff.IMAGE_FORMATS if incoming.archive else sniff.ACCEPTED
    ext = sniff.content_extension(incoming.name, incoming.path, expected)
    path = incoming.path.with_name(incoming.path.name + ext)
    incoming.path.rename(path)
    if ext != ".dcm":
        dataset = None
    elif dataset is None:
        dataset = parse_dicom(path)
    try:
        _check_pixels(incoming.name, path, ext, settings, dataset)
        if ext == ".nii.gz":
            _check_unpacked_size(incoming.name, path, settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slices = read_slices(path, dataset=dataset, meta=False)  # the pixels alone
    except (IngestError, UnreadableImage) as exc:
        # only a file that failed is looked at again: SR, PR, ... say so (a parsed dataset
        # has pixel data, so it is an image object that is broken)
        if ext == ".dcm" and dataset is None:
            _refuse_non_image(incoming.name, path)
        if isinstance(exc, IngestError):
            raise
        reason = _reason(exc, path).removeprefix(f"{path.name}: ")
        raise IngestError(422, _undecodable(incoming.name, ext, reason)) from None
    shapes = [(int(s.pixels.shape[0]), int(s.pixels.shape[1])) for s in slices]
    for rows, cols in shapes:
        if rows * cols > settings.max_pixels:
            raise IngestError(413, _too_many_pixels(incoming.name, rows, cols, settings))
    if min_side is None:
        min_side = judgeable.detector_min_side(settings.database_url)
    judgeable.check_slices(incoming.name, [s.pixels for s in slices], min_side)
    decoded = DecodedFile(incoming, path, ext, sha256_file(path), shapes)
    if ext == ".dcm":
        decoded = _with_dicom_ids(decoded, dataset)
    return decoded


def parse_dicom(path: Path) -> Dataset | None:
    """The whole DICOM file, its pixel data read but not decoded (the reader's own read), for
    the size check, the decode and the identifiers; None for a file that does not parse or has
    no pixel data, which the steps after read again, as they always did, to say what is wrong
    (pydicom keeps no element at all of a file cut short, whose header alone still reads)."""
    import pydicom

    from training.data.dicom_reader import has_pixel_data

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception:
        return None
    return ds if has_pixel_data(ds) else None


def _too_many_pixels(name: str, rows: int, cols: int, settings: Settings, frames: int = 1) -> str:
    size = f"{rows}x{cols}" + (f"x{frames} frames" if frames > 1 else "")
    return limits.too_many_pixels(name, size, rows * cols * frames, settings)


def _check_pixels(
    name: str, path: Path, ext: str, settings: Settings, dataset: Dataset | None = None
) -> None:
    """Header-only size check, before decoding anything (``dataset``: the parsed DICOM file)."""
    rows, cols, frames = _header_shape(name, path, ext, dataset)
    if rows < 1 or cols < 1:
        raise IngestError(
            422,
            f"{name}: found a {sniff.FORMAT_NAMES[ext]} image of {rows}x{cols} (its header's "
            "size), it has no pixels; expected an image of at least 1x1",
        )
    if rows * cols * frames > settings.max_pixels:
        raise IngestError(413, _too_many_pixels(name, rows, cols, settings, frames))


def _header_shape(
    name: str, path: Path, ext: str, dataset: Dataset | None = None
) -> tuple[int, int, int]:
    try:
        if ext in (".png", ".jpg"):
            from PIL import Image

            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    cols, rows = img.size
            return rows, cols, 1
        if ext in (".nii", ".nii.gz"):
            import nibabel as nib

            # a .nii / .nii.gz loads as a Nifti1Image or Nifti2Image (nibabel types it as
            # the FileBasedImage base class, which has no shape)
            volume = cast("nib.spatialimages.SpatialImage", nib.load(path))
            shape = tuple(int(n) for n in volume.shape)  # header only
            judgeable.check_volumes(name, shape)
            dims = (*shape, 1, 1, 1)[:3]
            return dims[0], dims[1], dims[2]
        ds = dataset
        if ds is None:  # it did not parse whole: its header alone may
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return (
            int(ds.get("Rows", 0) or 0),
            int(ds.get("Columns", 0) or 0),
            max(int(ds.get("NumberOfFrames", 1) or 1), 1),
        )
    except IngestError:
        raise
    except Exception as exc:
        if type(exc).__name__.startswith("DecompressionBomb"):
            raise IngestError(413, f"{name}: decompression bomb refused ({exc})") from None
        if ext == ".dcm":  # a broken DICOM header: let the reader name the problem
            return 1, 1, 1
        raise IngestError(422, _undecodable(name, ext, _reason(exc, path), "header")) from None


def _undecodable(name: str, ext: str, reason: str, what: str = "file") -> str:
    """A file of an accepted format (from its signature) that its reader refused; the reason
    comes first (a C-STORE Error Comment keeps 64 characters)."""
    label = sniff.FORMAT_NAMES[ext]
    return (
        f"{name}: unreadable {label} {what}: {reason}; expected a complete, readable {label} file"
    )


def _reason(exc: BaseException, path: Path) -> str:
    """A library's message without our temporary path (the client knows only its file name)."""
    text = str(exc)
    for quote in ("'", '"', ""):
        text = text.replace(f"{quote}{path}{quote}", "")
    return " ".join(text.split()).rstrip(" :") or type(exc).__name__


def _refuse_non_image(name: str, path: Path) -> None:
    """Raise :class:`NonImageObject` when ``path`` is a readable DICOM object of a non-image
    SOP class without pixel data; return for anything else (an image object that is broken)."""
    import pydicom

    from training.data.dicom_reader import has_pixel_data

    try:
        ds = pydicom.dcmread(path, defer_size=256)
    except Exception:  # garbage makes pydicom fail in many ways (NotImplementedError for an
        return  # unknown VR, BytesLengthException, ...): the reader's refusal stands
    if has_pixel_data(ds):
        return
    sop_class = ds.get("SOPClassUID")
    if sop_class is None:
        return
    label = getattr(sop_class, "name", "") or str(sop_class)
    if "Image Storage" in label:  # an image SOP class missing its pixels: broken, not skipped
        return
    uid = ds.get("SOPInstanceUID")
    raise NonImageObject(name, f"{label} ({sop_class})", str(uid) if uid else None)


def _with_dicom_ids(decoded: DecodedFile, dataset: Dataset | None = None) -> DecodedFile:
    """``decoded`` with the identifiers of its DICOM ``dataset`` (read from the file when
    not given)."""
    ds = dataset
    if ds is None:
        import pydicom

        ds = pydicom.dcmread(decoded.path, stop_before_pixels=True, force=True)

    def value(keyword: str) -> object:
        """The element's value; None when absent or when it does not parse (pydicom converts
        lazily: an IS of "2!" raises only here), as an unreadable identifier is no identifier."""
        try:
            return ds.get(keyword)
        except Exception:
            return None

    def text(keyword: str) -> str | None:
        found = value(keyword)
        return str(found).strip()[:64] or None if found is not None else None

    return DecodedFile(
        **{
            **decoded.__dict__,
            "sop_instance_uid": text("SOPInstanceUID"),
            "series_instance_uid": text("SeriesInstanceUID"),
            "study_instance_uid": text("StudyInstanceUID"),
            "instance_number": _instance_number(value("InstanceNumber")),
            "series_description": text("SeriesDescription"),
            "scanner": text("ManufacturerModelName"),
        }
    )


def _instance_number(found: object) -> int | None:
    """InstanceNumber (IS) as an int; None when absent, empty or not a number."""
    try:
        return int(str(found)) if found not in (None, "") else None
    except ValueError:
        return None


def _check_unpacked_size(name: str, path: Path, settings: Settings) -> None:
    """413 for a .nii.gz that expands past the limit, 422 for one that does not unpack (a
    cut-off stream, a wrong CRC: the header alone may read fine)."""
    try:
        within = gunzip_size_ok(path, settings.max_unzipped_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(422, _undecodable(name, ".nii.gz", _reason(exc, path))) from None
    if not within:
        raise IngestError(413, limits.unpacked_too_large(name, settings))


def gunzip_size_ok(path: Path, limit: int) -> bool:
    """True when a gzip file expands to at most ``limit`` bytes (NIfTI .nii.gz bombs)."""
    total = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            total += len(chunk)
            if total > limit:
                return False
    return True
