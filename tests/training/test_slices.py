"""Slicing: orientation, anatomy filter, isotropic resampling, step, 16-bit scaling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from training.data.slices import (
    extract_slices,
    foreground_threshold,
    load_volume,
    orient_slice,
    slices_from_path,
    thin,
    to_uint16,
    voxel_size,
)

MakeNifti = Callable[..., Path]
MakeHead = Callable[[tuple[int, int, int], tuple[float, float, float]], np.ndarray]


def _marker_volume() -> np.ndarray:
    """A RAS+ volume with one bright voxel at the right-anterior-superior corner region."""
    vol = np.zeros((10, 12, 14), np.float32)
    vol[8, 10, 12] = 1.0  # x high = right, y high = anterior, z high = superior
    return vol


def test_load_volume_reorients_to_ras(tmp_path: Path) -> None:
    ras = _marker_volume()
    # Store it LPS: flip x and y in the data and say so in the affine.
    lps_data, lps_affine = ras[::-1, ::-1, :], np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(lps_data, lps_affine), tmp_path / "lps.nii.gz")
    loaded = load_volume(tmp_path / "lps.nii.gz")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, ras)


def test_voxel_size_follows_the_reorientation(tmp_path: Path) -> None:
    # File axes (i, j, k) point along (S, R, A) with sizes (3, 1, 2) mm.
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 2.0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine), tmp_path / "p.nii.gz")
    assert load_volume(tmp_path / "p.nii.gz").shape == (5, 6, 4)
    assert voxel_size(tmp_path / "p.nii.gz") == pytest.approx((1.0, 2.0, 3.0))


def test_4d_series_gives_its_first_volume(make_nifti: MakeNifti) -> None:
    path = make_nifti(shape=(20, 24, 20), frames=3)
    first = load_volume(path)
    assert first.shape == (20, 24, 20)
    assert load_volume(path, volume_index=2).max() == pytest.approx(first.max() * 1.2, abs=1)
    with pytest.raises(ValueError, match="volume_index=3"):
        load_volume(path, volume_index=3)


@pytest.mark.parametrize(("plane", "index"), [("axial", 12), ("coronal", 10), ("sagittal", 8)])
def test_slices_are_shown_radiological_superior_anterior_up(plane: str, index: int) -> None:
    # Right-anterior-superior lands top-left: anterior/superior up, patient's right on the
    # viewer's left, sagittal facing left.
    image = orient_slice(_marker_volume(), plane, index)
    assert tuple(int(i) for i in np.unravel_index(np.argmax(image), image.shape)) == (1, 1)


def test_orient_slice_shape_is_rows_by_cols() -> None:
    vol = np.zeros((10, 12, 14), np.float32)
    assert orient_slice(vol, "axial", 0).shape == (12, 10)
    assert orient_slice(vol, "coronal", 0).shape == (14, 10)
    assert orient_slice(vol, "sagittal", 0).shape == (14, 12)
    with pytest.raises(ValueError, match="'oblique'"):
        orient_slice(vol, "oblique", 0)


def test_empty_slices_are_dropped(make_head: MakeHead) -> None:
    vol = make_head((48, 56, 48), (2.0, 2.0, 2.0)).astype(np.float32)
    records = extract_slices(vol, zooms=(2.0, 2.0, 2.0), step_mm=0.0, min_anatomy=0.15)
    threshold = foreground_threshold(vol)
    assert records
    assert all(np.mean(im > threshold) >= 0.15 for _, _, im in records)
    axial = [i for p, i, _ in records if p == "axial"]
    # The ellipsoid spans z in [-40, 40] mm of a 96 mm field: the end slices are empty.
    assert 0 not in axial
    assert 47 not in axial


def test_nothing_comes_from_an_empty_volume() -> None:
    assert extract_slices(np.zeros((40, 40, 40), np.float32)) == []


def test_anisotropic_voxels_are_resampled_to_square_pixels(make_head: MakeHead) -> None:
    zooms = (1.0, 1.0, 3.0)
    vol = make_head((100, 120, 34), zooms).astype(np.float32)
    records = extract_slices(vol, zooms=zooms, planes=("coronal", "axial"), step_mm=10.0)
    coronal = next(im for p, _, im in records if p == "coronal")
    axial = next(im for p, _, im in records if p == "axial")
    assert coronal.shape == (102, 100)  # 34 slices x 3 mm -> 102 rows of 1 mm
    assert axial.shape == (120, 100)  # already square: untouched
    # The head is 80 mm wide (x) and 80 mm tall (z): round again once resampled.
    mid = min((r for r in records if r[0] == "coronal"), key=lambda r: abs(r[1] - 60))[2]
    fg = mid > 50
    height = fg.any(axis=1).sum()
    width = fg.any(axis=0).sum()
    assert abs(height - width) <= 4


def test_reformats_of_few_slices_are_skipped(make_head: MakeHead) -> None:
    vol = make_head((64, 64, 10), (2.0, 2.0, 2.0)).astype(np.float32) + 1
    planes = {p for p, _, _ in extract_slices(vol, zooms=(2.0, 2.0, 2.0), min_anatomy=0.0)}
    assert planes == {"axial"}


def test_step_keeps_neighbours_apart(make_head: MakeHead) -> None:
    vol = make_head((48, 56, 48), (2.0, 2.0, 2.0)).astype(np.float32)
    records = extract_slices(vol, zooms=(2.0, 2.0, 2.0), planes=("axial",), step_mm=6.0)
    indices = [i for _, i, _ in records]
    assert np.all(np.diff(indices) * 2.0 >= 6.0)
    assert len(indices) >= 5


def test_thin_is_greedy_in_millimetres() -> None:
    assert thin([0.0, 1.0, 2.0, 3.0, 5.0, 5.5], 2.0) == [0, 2, 4]
    assert thin([], 2.0) == []
    with pytest.raises(ValueError, match="step_mm"):
        thin([0.0], -1.0)


def test_a_2d_image_is_a_one_slice_list(make_head: MakeHead) -> None:
    image = make_head((64, 64, 1), (2.0, 2.0, 80.0))[..., 0]
    records = extract_slices(image, planes=("coronal",))
    assert [(p, i) for p, i, _ in records] == [("coronal", 0)]
    assert extract_slices(np.zeros((64, 64)), planes=("coronal",)) == []
    with pytest.raises(ValueError, match="one slice"):
        extract_slices(image)


def test_slices_from_a_folder_of_pngs_thins_by_index(tmp_path: Path, make_head: MakeHead) -> None:
    image = make_head((56, 64, 1), (2.0, 2.0, 80.0))[..., 0].astype(np.uint8)
    for i in range(6):
        Image.fromarray(image).save(tmp_path / f"axial_{i:03d}.png")
    Image.fromarray(np.zeros_like(image)).save(tmp_path / "axial_006.png")
    records = slices_from_path(tmp_path, step_mm=2.0)
    assert [(p, i) for p, i, _ in records] == [("axial", 0), ("axial", 2), ("axial", 4)]


def test_to_uint16_round_trips_through_png(tmp_path: Path) -> None:
    image = np.linspace(-5.0, 1000.0, 64 * 48, dtype=np.float32).reshape(64, 48)
    scaled = to_uint16(image)
    assert scaled.dtype == np.uint16
    assert scaled.min() == 0
    assert scaled.max() == 65535
    Image.fromarray(scaled).save(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(im), scaled)
    with pytest.raises(ValueError, match="99.9th percentile"):
        to_uint16(np.zeros((8, 8)))
