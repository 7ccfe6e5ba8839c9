"""Fixtures for the data-source layer: tiny synthetic heads and a fake source cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from training.data.sources import SOURCES, cached_path

MakeNifti = Callable[..., Path]
MakeHead = Callable[[tuple[int, int, int], tuple[float, float, float]], np.ndarray]


def _head(shape: tuple[int, int, int], zooms: tuple[float, float, float]) -> np.ndarray:
    """An ellipsoid 'head' (radii 40/50/40 mm) of value 100 with a brighter core, in mm space."""
    axes = [(np.arange(n) - (n - 1) / 2) * z for n, z in zip(shape, zooms, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = (x / 40) ** 2 + (y / 50) ** 2 + (z / 40) ** 2
    return np.where(r <= 1, 100.0, 0.0) + np.where(r <= 0.3, 50.0, 0.0)


@pytest.fixture
def make_head() -> MakeHead:
    """``make_head(shape, zooms)``: a synthetic head volume (see :func:`_head`)."""
    return _head


@pytest.fixture
def make_nifti(tmp_path: Path) -> MakeNifti:
    """Write ``data`` (or a synthetic head) as a NIfTI with the given voxel sizes, RAS+ affine."""

    def make(
        name: str = "vol.nii.gz",
        *,
        shape: tuple[int, int, int] = (48, 56, 48),
        zooms: tuple[float, float, float] = (2.0, 2.0, 2.0),
        data: np.ndarray | None = None,
        frames: int = 0,
        folder: Path | None = None,
    ) -> Path:
        vol = _head(shape, zooms) if data is None else data
        if frames:
            vol = np.stack([vol * (1 + 0.1 * t) for t in range(frames)], axis=-1)
        affine = np.diag([*zooms, 1.0])
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(vol.astype(np.int16), affine), path)
        return path

    return make


@pytest.fixture
def fake_cache(tmp_path: Path, make_nifti: MakeNifti) -> Path:
    """A cache that already holds a tiny stand-in for every source, so nothing is downloaded."""
    cache = tmp_path / "cache"
    for name, source in SOURCES.items():
        target = cached_path(cache, name)
        target.parent.mkdir(parents=True)
        if source.layout == "nifti":
            frames = 2 if name == "nibabel_epi" else 0
            if name == "dipy_aniso":  # thick slices: only the axial plane is usable
                make_nifti(
                    target.name, folder=target.parent, shape=(36, 40, 20), zooms=(4.0, 4.0, 5.0)
                )
            else:
                make_nifti(target.name, folder=target.parent, frames=frames)
        elif source.layout == "npy":
            np.save(target, _head((64, 64, 1), (2.0, 2.0, 80.0))[..., 0])
        else:
            target.mkdir()
            sagittal = _head((1, 64, 56), (80.0, 2.0, 2.0))[0]
            for i in range(0, 12):
                axial = _head((56, 64, 1), (2.0, 2.0, 80.0))[..., 0] * (1 if i < 10 else 0)
                Image.fromarray(axial.astype(np.uint8)).save(target / f"axial_{i:03d}.png")
            Image.fromarray(sagittal.astype(np.uint8)).save(target / "sagittal_019.png")
    return cache


@pytest.fixture(scope="session")
def source_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the slow test fetches the real sources: $AMAQC_TEST_CACHE, else a temp folder."""
    env = os.environ.get("AMAQC_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("source-cache")
