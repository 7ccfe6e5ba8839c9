"""2-D slices from MR volumes, cut and oriented the way a viewer shows them.

Every slice comes out in one display convention, whatever the file's voxel order: the volume
is first brought to RAS+ (``nib.as_closest_canonical``), then each slice is shown
superior/anterior up and radiological (patient's right on the viewer's left; sagittal slices
face left). Anisotropic in-plane pixels are resampled to square ones using the voxel sizes,
slices with too little anatomy are dropped, and slices closer than ``step_mm`` to the previous
one are skipped so a 1 mm volume does not yield hundreds of near-identical neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "PLANES",
    "SliceRecord",
    "anatomy_fraction",
    "extract_slices",
    "foreground_threshold",
    "load_volume",
    "orient_slice",
    "slices_from_path",
    "thin",
    "to_uint16",
    "voxel_size",
]

PLANES: Final = ("axial", "coronal", "sagittal")
SliceRecord = tuple[str, int, np.ndarray]  # (plane, index along the slice axis, (H, W) float32)

# RAS+ axis each plane cuts across; the in-plane (rows, cols) axes follow from it.
_SLICE_AXIS: Final = {"sagittal": 0, "coronal": 1, "axial": 2}
_IN_PLANE: Final = {"sagittal": (2, 1), "coronal": (2, 0), "axial": (1, 0)}
_SLICE_FILE: Final = re.compile(r"^(axial|coronal|sagittal)_(\d+)\.png$")
_MRIQC_SPACING_MM: Final = 1.0  # ds002785 T1w are 1 mm isotropic; slice numbers are voxels


def load_volume(path: Path, *, volume_index: int = 0) -> np.ndarray:
    """Load an image as float32.

    NIfTI: reoriented to RAS+ and returned as ``(X, Y, Z)``; a 4-D series gives its volume
    ``volume_index`` (the first by default: the frames of a short EPI/DWI run look alike).
    ``.npy`` and ``.png``: the 2-D array as stored, ``(H, W)``.
    """
    path = Path(path)
    if path.suffix == ".npy":
        return _as_2d(np.load(path), path)
    if path.suffix == ".png":
        with Image.open(path) as im:
            return _as_2d(np.asarray(im), path)
    img = nib.as_closest_canonical(_spatial_image(path))
    if len(img.shape) == 4:
        if not 0 <= volume_index < img.shape[3]:
            raise ValueError(
                f"volume_index={volume_index} out of range for {path} with {img.shape[3]} volumes"
            )
        data = np.asanyarray(img.dataobj[..., volume_index])
    elif len(img.shape) == 3:
        data = np.asanyarray(img.dataobj)
    else:
        raise ValueError(f"{path}: expected a 3-D or 4-D NIfTI, got shape {img.shape}")
    return np.asarray(data, dtype=np.float32)


def voxel_size(path: Path) -> tuple[float, float, float]:
    """Voxel size in mm along the RAS+ axes of :func:`load_volume`'s array."""
    affine = _spatial_image(Path(path)).affine
    sizes = nib.affines.voxel_sizes(affine)
    ornt = nib.orientations.io_orientation(affine)
    out = [0.0, 0.0, 0.0]
    for file_axis, (ras_axis, _) in enumerate(ornt[:3]):
        out[int(ras_axis)] = float(sizes[file_axis])
    return out[0], out[1], out[2]


def foreground_threshold(values: np.ndarray) -> float:
    """Intensity above which a voxel counts as anatomy: 10 % into the robust range.

    This is FSL BET's background threshold, ``p2 + 0.1 * (p98 - p2)``. Unlike Otsu it does not
    split bright CSF from tissue on a DWI b0 (where Otsu kept ~5 % of a head that fills a quarter
    of the field of view).
    """
    p2, p98 = np.percentile(np.asarray(values, dtype=np.float32), [2.0, 98.0])
    return float(p2 + 0.1 * (p98 - p2))


def anatomy_fraction(image: np.ndarray, threshold: float) -> float:
    """Fraction of pixels brighter than ``threshold`` (the foreground)."""
    return float(np.mean(image > threshold))


def orient_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Slice ``index`` of a RAS+ ``(X, Y, Z)`` volume in display orientation, ``(H, W)``."""
    _check_plane(plane)
    axis = _SLICE_AXIS[plane]
    section = volume[(slice(None),) * axis + (index,)]
    # Indexing leaves the two remaining axes in RAS order (cols-axis, rows-axis); transposing
    # puts rows first, and reversing both puts superior/anterior up and the patient's right
    # (sagittal: anterior) on the left.
    return np.ascontiguousarray(section.T[::-1, ::-1])


def thin(positions_mm: Sequence[float], step_mm: float) -> list[int]:
    """Indices into ``positions_mm`` (ascending) keeping neighbours at least ``step_mm`` apart."""
    if step_mm < 0:
        raise ValueError(f"step_mm must be >= 0, got {step_mm}")
    keep: list[int] = []
    for i, p in enumerate(positions_mm):
        if not keep or p - positions_mm[keep[-1]] >= step_mm - 1e-6:
            keep.append(i)
    return keep


def extract_slices(
    volume: np.ndarray,
    *,
    zooms: tuple[float, float, float] = (1.0, 1.0, 1.0),
    planes: Sequence[str] = PLANES,
    min_anatomy: float = 0.15,
    step_mm: float = 2.0,
    min_size: int = 32,
) -> list[SliceRecord]:
    """Slices with enough anatomy from a RAS+ volume ``(X, Y, Z)``, or a 2-D image ``(H, W)``.

    Args:
        volume: from :func:`load_volume`. A 2-D image is one slice: ``planes`` must then name
            its single plane and the result has at most one record, with index 0.
        zooms: voxel size in mm along X, Y, Z (:func:`voxel_size`); in-plane pixels are
            resampled to the smaller of the two in-plane sizes (linear interpolation).
        min_anatomy: smallest fraction of foreground pixels (:func:`foreground_threshold` of
            the whole volume) a slice needs to be kept.
        step_mm: smallest distance between two kept slices of one plane.
        min_size: a plane is skipped when the acquired matrix has fewer voxels than this along
            either in-plane axis (e.g. coronal reformats of a 10-slice axial DWI).

    Returns:
        ``(plane, index, image)`` with ``image`` ``(H, W)`` float32 in display orientation and
        ``index`` the voxel index along the plane's slice axis.
    """
    if not 0.0 <= min_anatomy <= 1.0:
        raise ValueError(f"min_anatomy must be in [0, 1], got {min_anatomy}")
    for plane in planes:
        _check_plane(plane)
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 2:
        if len(planes) != 1:
            raise ValueError(f"a 2-D image is one slice: pass planes=(plane,), got {planes}")
        if min(volume.shape) < min_size:
            return []
        ok = anatomy_fraction(volume, foreground_threshold(volume)) >= min_anatomy
        return [(planes[0], 0, volume)] if ok else []
    if volume.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {volume.shape}")
    if len(zooms) != 3 or min(zooms) <= 0:
        raise ValueError(f"zooms must be three positive voxel sizes in mm, got {zooms}")

    # Percentiles of a subsample are plenty for a threshold and keep 0.5 mm volumes fast.
    stride = max(1, round((volume.size / 2_000_000) ** (1 / 3)))
    threshold = foreground_threshold(volume[::stride, ::stride, ::stride])
    foreground = volume > threshold
    out: list[SliceRecord] = []
    for plane in planes:
        axis = _SLICE_AXIS[plane]
        rows_axis, cols_axis = _IN_PLANE[plane]
        if min(volume.shape[rows_axis], volume.shape[cols_axis]) < min_size:
            continue
        other = tuple(a for a in range(3) if a != axis)
        fraction = foreground.mean(axis=other)
        candidates = [i for i in range(volume.shape[axis]) if fraction[i] >= min_anatomy]
        kept = thin([i * zooms[axis] for i in candidates], step_mm)
        for k in kept:
            index = candidates[k]
            image = orient_slice(volume, plane, index)
            image = _square_pixels(image, zooms[rows_axis], zooms[cols_axis])
            out.append((plane, index, image))
    return out


def slices_from_path(
    path: Path,
    *,
    planes: Sequence[str] = PLANES,
    min_anatomy: float = 0.15,
    step_mm: float = 2.0,
    min_size: int = 32,
) -> list[SliceRecord]:
    """:func:`extract_slices` on a cached source of any layout.

    ``path`` is a NIfTI volume (cut in ``planes``), a 2-D ``.npy``/``.png`` (``planes`` names
    its one plane), or a folder of ``<plane>_<index>.png`` slices already in display
    orientation (the mriqc figures: indices are 1 mm voxel numbers, thinned to ``step_mm`` per
    plane; planes not in ``planes`` are ignored).
    """
    path = Path(path)
    if path.is_dir():
        by_plane: dict[str, list[tuple[int, Path]]] = {}
        for f in path.iterdir():
            m = _SLICE_FILE.match(f.name)
            if m:
                by_plane.setdefault(m.group(1), []).append((int(m.group(2)), f))
        if not by_plane:
            raise ValueError(f"{path} holds no <plane>_<index>.png slices")
        out: list[SliceRecord] = []
        for p in sorted(by_plane.keys() & set(planes)):
            found = [
                (index, image)
                for index, f in sorted(by_plane[p])
                for _, _, image in extract_slices(
                    load_volume(f), planes=(p,), min_anatomy=min_anatomy, min_size=min_size
                )
            ]
            keep = thin([index * _MRIQC_SPACING_MM for index, _ in found], step_mm)
            out += [(p, *found[k]) for k in keep]
        return out
    if path.suffix in (".npy", ".png"):
        return extract_slices(
            load_volume(path), planes=planes, min_anatomy=min_anatomy, min_size=min_size
        )
    volume, zooms = load_volume(path), voxel_size(path)
    return extract_slices(
        volume,
        zooms=zooms,
        planes=planes,
        step_mm=step_mm,
        min_anatomy=min_anatomy,
        min_size=min_size,
    )


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Scale ``image``'s robust range [0, 99.9th percentile] to the full uint16 range.

    Raises:
        ValueError: the 99.9th percentile is not positive (an empty slice).
    """
    hi = float(np.percentile(image, 99.9))
    if not hi > 0:
        raise ValueError(f"cannot scale a slice whose 99.9th percentile is {hi}")
    scaled = np.clip(np.asarray(image, dtype=np.float64), 0.0, hi) / hi * 65535.0
    return np.round(scaled).astype(np.uint16)


def _square_pixels(image: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    target = min(row_mm, col_mm)
    if abs(row_mm - col_mm) <= 1e-3 * target:
        return image
    zoomed = ndimage.zoom(
        image, (row_mm / target, col_mm / target), order=1, grid_mode=True, mode="nearest"
    )
    return np.asarray(zoomed, dtype=np.float32)


def _spatial_image(path: Path) -> nib.spatialimages.SpatialImage:
    img = nib.load(path)
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise ValueError(f"{path}: not a volume with an affine ({type(img).__name__})")
    return img


def _as_2d(array: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D slice, got shape {a.shape}")
    return a.astype(np.float32)


def _check_plane(plane: str) -> None:
    if plane not in _SLICE_AXIS:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
