"""The IQM panel's values are pinned: the served fusion model was fitted on them, so a faster
``model/iqm.py`` must give the same numbers (``tests/utils/iqm_reference.py`` says how the
reference was made and when to regenerate it). Its exact stand-ins for numpy / scipy routines
(:mod:`model.iqm_kernels`) are checked against those directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from model.iqm import IQM_NAMES, PANEL_VERSION, compute_iqms
from model.iqm_kernels import (
    erode,
    fill_holes,
    gaussian_at,
    gradient_magnitude,
    histogram,
    median,
    percentile,
)
from tests.utils.iqm_reference import REFERENCE, fingerprint, reference_slices

#: the tolerance issue 18 allows a rewrite (values ~0 compare absolutely)
REL, ABS = 1e-6, 1e-9

_REFERENCE = json.loads(REFERENCE.read_text())
_SLICES = reference_slices()


def test_the_reference_is_of_the_current_panel_version() -> None:
    assert _REFERENCE["panel_version"] == PANEL_VERSION
    assert set(_REFERENCE["slices"]) == set(_SLICES)


@pytest.mark.parametrize("name", sorted(_SLICES))
def test_the_panel_reproduces_its_pinned_values(name: str) -> None:
    expected = _REFERENCE["slices"][name]
    image = _SLICES[name]
    # a changed input (numpy / scipy upgrade) is not a changed panel: say which it is
    assert fingerprint(image) == pytest.approx(expected["fingerprint"], rel=1e-9), "input moved"
    values = compute_iqms(image)
    assert tuple(values) == IQM_NAMES
    wrong = {
        k: (values[k], v)
        for k, v in expected["iqms"].items()
        if not np.isclose(values[k], v, rtol=REL, atol=ABS)
    }
    assert not wrong, f"(got, pinned): {wrong}"


def _masks(count: int, seed: int = 0) -> list[np.ndarray]:
    """Random blobby masks of random shapes (holes, specks, edge contact), one all set."""
    rng = np.random.default_rng(seed)
    masks = [np.ones((20, 30), dtype=bool)]
    for _ in range(count):
        h, w = rng.integers(16, 70, 2)
        smooth = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 4))
        masks.append(smooth > rng.uniform(0.45, 0.55))
    return masks


def test_the_fast_morphology_is_scipys() -> None:
    for mask in _masks(60):
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        assert np.array_equal(erode(mask, 2), ndimage.binary_erosion(mask, iterations=2))
        if mask.all():
            continue
        distance = ndimage.distance_transform_cdt(~mask, metric="taxicab")
        for k in (2, 7):
            assert np.array_equal(distance <= k, ndimage.binary_dilation(mask, iterations=k))


def test_the_fast_histogram_is_numpys_on_and_off_bin_edges() -> None:
    rng = np.random.default_rng(1)
    edges = np.linspace(0.1, 2.3, 129)
    on_edges = np.r_[edges, np.nextafter(edges, 0), np.nextafter(edges, 9)]
    for values in (rng.random(5000) * 3 - 1, np.full(9, 3.0), on_edges, 1e6 + rng.random(99)):
        counts, bin_edges = histogram(values, 128)
        expected = np.histogram(values, bins=128)
        assert np.array_equal(counts, expected[0])
        assert np.array_equal(bin_edges, expected[1])


def test_the_percentiles_are_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(2)
    samples = [
        rng.integers(0, 50, size) / 7.0
        for size in (1, 2, 3, 10, 999, 4096)  # many ties
    ] + [rng.standard_normal(size) for size in (1, 2, 5, 1000, 30001)]
    for values in samples:
        assert median(values) == np.median(values)
        for q in (0, 25, 50, 90, 99, 100):
            assert percentile(values, q) == np.percentile(values, q)
    assert percentile(np.array([]), 50) == 0.0


def test_the_gradient_at_some_pixels_is_numpys() -> None:
    image = np.random.default_rng(3).random((17, 23))
    rows, cols = np.nonzero(np.random.default_rng(4).random(image.shape) > 0.5)
    expected = np.hypot(*np.gradient(image))[rows, cols]
    assert np.array_equal(gradient_magnitude(image, rows, cols), expected)


def test_the_gaussian_at_some_pixels_is_scipys() -> None:
    """Bit for bit, at sparse pixels (the pixels-only path), pixels on every edge and corner
    (the reflections), a thin ring (sharpness' edge band) and most pixels (scipy's own)."""
    rng = np.random.default_rng(5)
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(5, 90, 2))
        image = rng.random((h, w)) * rng.uniform(0.1, 1e4)
        sigma = float(rng.choice([0.7, 1.0, 1.5, 2.5]))
        mask = rng.random((h, w)) < rng.choice([0.002, 0.02, 0.1, 0.9])
        if trial % 4 == 0:
            mask[[0, -1]] = mask[:, [0, -1]] = True
        if trial % 4 == 1:
            yy, xx = np.mgrid[:h, :w]
            r = np.hypot((yy - h / 2) / h, (xx - w / 2) / w)
            mask = (r > 0.3) & (r < 0.33)
        flat = np.flatnonzero(mask)
        expected = ndimage.gaussian_filter(image, sigma).ravel()[flat]
        assert np.array_equal(gaussian_at(image, sigma, flat), expected), (h, w, sigma)
