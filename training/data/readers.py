"""Read the MR images people actually have: DICOM, PNG, JPEG, NIfTI and ``.npy``.

:func:`read_slices` returns one :class:`Slice` per 2-D image. The format comes from the file's
content (DICM preamble, PNG/JPEG/NumPy signatures) and, for NIfTI or DICOM without preamble,
from its name. Every failure -- unknown format, corrupt or truncated file, a DICOM object with
no pixel data, NaN voxels -- is raised as :class:`UnreadableImage` naming the file, never as a
library exception, so :func:`read_many` can list bad files and go on.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.orientations import apply_orientation, io_orientation
from PIL import Image, ImageOps

from .dicom_reader import count_dicom_frames, looks_like_dicom, luminance, read_dicom
from .image_types import Slice, UnreadableImage
from .signatures import HEAD, signature

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Format = Literal["dicom", "dicom-no-preamble", "png", "jpeg", "nifti", "npy"]

# Files that sit next to images but are never images: not offered by iter_image_files.
NON_IMAGE_SUFFIXES = frozenset(
    {".csv", ".tsv", ".xlsx", ".xls", ".txt", ".json", ".md", ".xml", ".html", ".pdf", ".log"}
)
NON_IMAGE_NAMES = frozenset({"dicomdir", "thumbs.db", "desktop.ini"})
# Suffixes under which a DICOM file without the preamble is still worth trying.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima", ""})
_PIL_MODES_AS_IS = frozenset({"L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def read_slices(
    path: Path | str, *, dataset: Dataset | None = None, meta: bool = True
) -> list[Slice]:
    """All 2-D slices in the image file ``path``.

    DICOM: one Slice per frame. NIfTI: one per axial slice, inferior to superior, shown as in
    a DICOM axial image (anterior up, patient right on the left); 4-D -> first volume.
    ``.npy``: (H, W) -> one, (N, H, W) -> N. PNG/JPEG: one, colour -> luminance.

    ``dataset``: a DICOM ``path`` already read whole by ``pydicom.dcmread(path, force=True)``
    (the API reads it once for its size check, the pixels and the identifiers), used instead
    of reading the file again; ignored when ``path`` is not DICOM.

    ``meta=False``: DICOM slices come without their metadata (``Slice.meta`` has only the
    frame number of a multi-frame file), for a caller that uses the pixels alone (the QC
    worker reading back files the API read whole); the allow-list's lookups are about a
    sixth of the time a 256x256 slice takes to read.

    Raises:
        UnreadableImage: for anything that is not a readable image, naming the file.
    """
    path = Path(path)
    try:
        fmt = _detect_format(path, dataset)
        slices = _read(path, fmt, dataset, meta)
    except (UnreadableImage, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every library error becomes one exception type; Rust
        # decoders (pylibjpeg-rle via pyo3) panic with a BaseException, not an Exception
        raise UnreadableImage(f"{path.name}: {_describe(exc)}") from exc
    if not slices:
        raise UnreadableImage(f"{path.name}: contains no slices")
    return slices


def count_slices(path: Path | str) -> int:
    """How many slices :func:`read_slices` would return, from the header only (cheap).

    Raises:
        UnreadableImage: when the header cannot be read or the file is not an image.
    """
    path = Path(path)
    try:
        fmt = _detect_format(path)
        if fmt in ("dicom", "dicom-no-preamble"):
            return count_dicom_frames(path, force=fmt == "dicom-no-preamble")
        if fmt in ("png", "jpeg"):
            with Image.open(path) as img:
                _check_pil_format(path, img)
            return 1
        if fmt == "nifti":
            nifti = _load_nifti(path)
            shape = _nifti_3d_shape(path, nifti.shape)
            ornt = _ras_orientation(nifti.affine)
            ras = (
                shape if ornt is None else tuple(shape[list(ornt[:, 0]).index(a)] for a in range(3))
            )
            return ras[_slicing_axis(ras)]
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return 1 if arr.ndim == 2 else int(_npy_shape(path, arr.shape)[0])
    except (UnreadableImage, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # see read_slices
        raise UnreadableImage(f"{path.name}: {_describe(exc)}") from exc


def iter_image_files(root: Path | str) -> Iterator[Path]:
    """Candidate image files under ``root``, recursively, in sorted order.

    Hidden files and folders (name starting with ``.``) and obvious non-images (label sheets,
    text, DICOMDIR) are skipped. Extensions are not required: DICOM files often have none.
    A ``root`` that is a file yields itself.
    """
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.lower() in NON_IMAGE_NAMES:
                continue
            if Path(name).suffix.lower() in NON_IMAGE_SUFFIXES:
                continue
            found.append(Path(folder, name))
    yield from sorted(found)


@dataclass(frozen=True)
class ReadReport:
    """What :func:`read_many` read: slices per readable file, and the files it skipped."""

    slices: dict[Path, list[Slice]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def n_files(self) -> int:
        return len(self.slices)

    @property
    def n_slices(self) -> int:
        return sum(len(s) for s in self.slices.values())

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def all_slices(self) -> list[Slice]:
        return [s for slices in self.slices.values() for s in slices]


def read_many(
    paths: Iterable[Path | str], *, on_error: Literal["skip", "raise"] = "skip"
) -> ReadReport:
    """Read every file in ``paths``; unreadable ones are skipped and listed, never a crash.

    With ``on_error="skip"`` a summary (``"skipped 3 unreadable files: ..."``) is issued with
    :func:`warnings.warn` and logged; ``on_error="raise"`` re-raises the first
    :class:`UnreadableImage` instead.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    report = ReadReport()
    for raw in paths:
        path = Path(raw)
        if path in report.slices:
            continue
        try:
            report.slices[path] = read_slices(path)
        except UnreadableImage as exc:
            if on_error == "raise":
                raise
            reason = str(exc).removeprefix(f"{path.name}: ")
            report.skipped.append((path, reason))
            logger.debug("skipping %s: %s", path.name, reason)
    if report.skipped:
        message = skipped_summary(report.skipped)
        logger.warning(message)
        warnings.warn(message, stacklevel=2)
    return report


def skipped_summary(skipped: list[tuple[Path, str]], *, show: int = 3) -> str:
    """``"skipped 2 unreadable files: a.png (reason); b.dcm (reason)"`` (first ``show``)."""
    n = len(skipped)
    listed = "; ".join(f"{p.name} ({reason})" for p, reason in skipped[:show])
    more = f"; and {n - show} more" if n > show else ""
    return f"skipped {n} unreadable file{'s' if n != 1 else ''}: {listed}{more}"


# --- format detection ------------------------------------------------------------------


def _detect_format(path: Path, dataset: Dataset | None = None) -> Format:
    if path.is_dir():
        raise UnreadableImage(f"{path.name}: is a folder, not a file")
    with path.open("rb") as fh:
        head = fh.read(HEAD)
    found = signature(head)
    if found in ("dicom", "png", "jpeg", "npy"):
        return found
    if found == "nifti" or path.name.lower().endswith((".nii", ".nii.gz")):
        return "nifti"
    if not head:
        raise UnreadableImage(f"{path.name}: file is empty")
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".npy"):
        raise UnreadableImage(f"{path.name}: content is not a {suffix[1:].upper()} file")
    if suffix in _DICOM_SUFFIXES or suffix[1:].isdigit():
        try:
            if looks_like_dicom(path, dataset=dataset):
                return "dicom-no-preamble"
        except Exception:  # not DICOM after all: fall through to the generic message
            pass
    raise UnreadableImage(
        f"{path.name}: unrecognised file format (not DICOM, PNG, JPEG, NIfTI or .npy)"
    )


def _read(
    path: Path, fmt: Format, dataset: Dataset | None = None, with_meta: bool = True
) -> list[Slice]:
    if fmt in ("dicom", "dicom-no-preamble"):
        frames, meta = read_dicom(
            path, force=fmt == "dicom-no-preamble", dataset=dataset, meta=with_meta
        )
        if len(frames) == 1:
            return [_make_slice(path, frames[0], 0, meta)]
        return [_make_slice(path, a, i, {**meta, "frame": str(i)}) for i, a in enumerate(frames)]
    if fmt in ("png", "jpeg"):
        return [_make_slice(path, _read_pil(path), 0, {"format": fmt})]
    if fmt == "nifti":
        return _read_nifti(path)
    return _read_npy(path)


def _make_slice(path: Path, arr: np.ndarray, index: int, meta: dict[str, str]) -> Slice:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise UnreadableImage(f"{path.name}: slice {index} has shape {arr.shape}, not 2-D")
    if not np.isfinite(arr).all():
        raise UnreadableImage(f"{path.name}: contains NaN or infinite values")
    return Slice(pixels=arr, index=index, meta=meta)


# --- PNG / JPEG ----------------------------------------------------------------------------


def _check_pil_format(path: Path, img: Image.Image) -> None:
    if img.format not in ("PNG", "JPEG", "MPO"):
        raise UnreadableImage(f"{path.name}: unsupported image format {img.format}")


def _read_pil(path: Path) -> FloatArray:
    with Image.open(path) as opened:
        _check_pil_format(path, opened)
        opened.load()  # decode now: a truncated file fails here, inside the try
        img = ImageOps.exif_transpose(opened)
    if img.mode in _PIL_MODES_AS_IS:
        # 16-bit greyscale PNG opens as "I;16" (or "I"): np.asarray keeps all 16 bits
        return np.asarray(img).astype(np.float32)
    if img.mode in ("1", "LA", "La"):
        return np.asarray(img.convert("L")).astype(np.float32)
    # palette, RGB(A), CMYK, YCbCr, ... -> float luminance (no rounding to 8 bit)
    return luminance(np.asarray(img.convert("RGB")))


# --- NIfTI -------------------------------------------------------------------------------


def _read_nifti(path: Path) -> list[Slice]:
    img = _load_nifti(path)
    shape = img.shape
    _nifti_3d_shape(path, shape)
    # 4-D and higher: the first volume only; slicing the proxy avoids loading the rest
    index = (slice(None),) * min(len(shape), 3) + (0,) * max(len(shape) - 3, 0)
    data = np.asarray(img.dataobj[index])  # scl_slope / scl_inter applied by nibabel
    if data.dtype.kind not in "biuf":
        raise UnreadableImage(f"{path.name}: unsupported NIfTI data type {data.dtype}")
    if not np.isfinite(data).all():
        raise UnreadableImage(f"{path.name}: contains NaN or infinite voxel values")
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    ornt = _ras_orientation(img.affine)
    if ornt is not None:  # voxel axes become R, A, S
        data = apply_orientation(data, ornt)
    data = np.moveaxis(data, _slicing_axis(data.shape), 2)
    zooms = img.header.get_zooms()
    meta = {"format": "nifti", "shape": "x".join(str(n) for n in shape)}
    meta["voxel_size"] = "x".join(f"{float(z):g}" for z in zooms[:3])
    # (x=R, y=A) -> rows anterior..posterior, columns right..left, like a DICOM axial image
    # (the same flip puts superior up for a single coronal or sagittal image)
    return [
        _make_slice(path, data[:, :, k].T[::-1, ::-1], k, dict(meta)) for k in range(data.shape[2])
    ]


def _load_nifti(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise UnreadableImage(f"{path.name}: not a NIfTI-1/NIfTI-2 image")
    return img


def _slicing_axis(ras_shape: tuple[int, ...]) -> int:
    """Axis to cut along in RAS order: S (axial), unless the volume is one 2-D image."""
    if ras_shape[2] > 1 and 1 in ras_shape[:2]:
        return ras_shape.index(1)  # a single sagittal or coronal image: keep its plane
    return 2


def _nifti_3d_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) < 2:
        raise UnreadableImage(f"{path.name}: NIfTI shape {shape} is not an image")
    dims = (*shape[:3], 1, 1)[:3]
    if min(dims) < 1:
        raise UnreadableImage(f"{path.name}: NIfTI shape {shape} is empty")
    return dims[0], dims[1], dims[2]


def _ras_orientation(affine: np.ndarray) -> np.ndarray | None:
    """Axis flips/permutation to the closest RAS; None for a degenerate affine."""
    try:
        ornt = np.asarray(io_orientation(affine))
    except Exception:
        return None
    if ornt.shape != (3, 2) or np.isnan(ornt).any():
        return None
    return ornt


# --- .npy --------------------------------------------------------------------------------


def _npy_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) not in (2, 3) or 0 in shape:
        raise UnreadableImage(f"{path.name}: .npy shape {shape} is not (H, W) or (N, H, W)")
    return shape


def _read_npy(path: Path) -> list[Slice]:
    arr = np.load(path, allow_pickle=False)
    _npy_shape(path, arr.shape)
    if arr.dtype.kind not in "biuf":
        raise UnreadableImage(f"{path.name}: unsupported .npy dtype {arr.dtype}")
    stack = arr[np.newaxis] if arr.ndim == 2 else arr
    return [_make_slice(path, stack[i], i, {"format": "npy"}) for i in range(stack.shape[0])]


def _describe(exc: BaseException) -> str:
    """A short, stable reason for a library exception."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, EOFError):
        return f"file is truncated ({exc})" if str(exc) else "file is truncated"
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    if isinstance(exc, ValueError | OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
