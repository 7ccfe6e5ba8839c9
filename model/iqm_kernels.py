"""Exact, faster stand-ins for the numpy / scipy routines the IQM panel (:mod:`model.iqm`) runs
on every slice: each gives the routine's result (bit for bit, or the same masks) for the inputs
the panel passes, with less work. The served fusion model was fitted on the panel's values, so a
stand-in that is not exact has no place here; ``tests/model/test_iqm_values.py`` checks each
against the routine it replaces.

| stand-in | replaces | how |
|---|---|---|
| ``percentile``, ``median`` | ``np.percentile`` (linear), ``np.median`` | one partition |
| ``histogram`` | ``np.histogram(values, bins)`` | edge corrections only near an edge |
| ``fill_holes`` | ``ndimage.binary_fill_holes`` | one labelling of the background |
| ``erode`` | ``ndimage.binary_erosion(mask, iterations=k)`` | array shifts |
| ``gradient_magnitude`` | ``np.hypot(*np.gradient(image))[rows, cols]`` | at those pixels only |

(``margin`` binary dilations with the 4-neighbour cross are a city-block distance transform,
``ndimage.distance_transform_cdt(~mask, metric="taxicab") <= margin``: :func:`model.iqm.prepare`
calls that directly.)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["erode", "fill_holes", "gradient_magnitude", "histogram", "median", "percentile"]


# np.percentile and np.median partition an array around each order statistic they need and, for
# their NaN check, around its maximum too: on slices of a few thousand grey levels (12-bit DICOM)
# every further partition costs several times the first. The panel's arrays are finite, so these
# two partition once, take the next order statistic as the minimum above it, and interpolate
# with numpy's own arithmetic.


def _order_pair(values: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest of ``values`` (the k-th twice for the last)."""
    part = np.partition(values, k)
    return float(part[k]), float(part[k + 1 :].min()) if k + 1 < part.size else float(part[k])


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a finite 1-D array, bit for bit;
    0 for an empty array."""
    if values.size == 0:
        return 0.0
    index = (values.size - 1) * (q / 100)
    lo = math.floor(index)
    a, b = _order_pair(values, lo)
    t = index - lo
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # as numpy's _lerp


def median(values: np.ndarray) -> float:
    """``np.median(values)`` of a finite, non-empty 1-D array, bit for bit."""
    half = values.size // 2
    if values.size % 2:
        return float(np.partition(values, half)[half])
    a, b = _order_pair(values, half - 1)
    return (a + b) / 2


def histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(values, bins)`` of finite values: the same counts and edges by numpy's
    own arithmetic, whose exact edge tests (a value within rounding of a bin edge) run on the
    values near an edge only instead of on all of them."""
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    if hi - lo < 1e-6 * max(abs(lo), abs(hi)):  # too narrow for the 1e-6-bin margin below
        counts, edges = np.histogram(values, bins=bins)
        return counts, edges
    edges = np.linspace(lo, hi, bins + 1)
    f = (values - lo) / (hi - lo) * bins
    index = f.astype(np.intp)
    index[index == bins] = bins - 1
    frac = f - index
    near = np.flatnonzero((frac < 1e-6) | (frac > 1 - 1e-6))
    if near.size:  # numpy's corrections, where rounding could have put a value one bin off
        v, i = values[near], index[near]
        i -= v < edges[i]
        i += (v >= edges[i + 1]) & (i != bins - 1)
        index[near] = i
    return np.bincount(index, minlength=bins), edges


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not touch the image's border filled
    (4-connected, as ``ndimage.binary_fill_holes``; one labelling instead of a dilation run to
    convergence)."""
    labels, n = ndimage.label(~mask, output=np.intp)
    hole = np.ones(n + 1, dtype=bool)
    hole[labels[0]] = hole[labels[-1]] = hole[labels[:, 0]] = hole[labels[:, -1]] = False
    hole[0] = True  # label 0 is the mask itself
    return hole[labels]


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_erosion(mask, iterations=iterations)`` (4-neighbour cross, outside the
    image counts as background) by array shifts."""
    x = np.pad(mask, iterations)
    for _ in range(iterations):
        y = x.copy()
        y[1:] &= x[:-1]
        y[:-1] &= x[1:]
        y[:, 1:] &= x[:, :-1]
        y[:, :-1] &= x[:, 1:]
        x = y
    return x[iterations:-iterations, iterations:-iterations]


def gradient_magnitude(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``np.hypot(*np.gradient(image))[rows, cols]`` (central differences, one-sided on the
    image's border, the same arithmetic) at those pixels only."""
    h, w = image.shape
    up, down = np.maximum(rows - 1, 0), np.minimum(rows + 1, h - 1)
    left, right = np.maximum(cols - 1, 0), np.minimum(cols + 1, w - 1)
    gy = (image[down, cols] - image[up, cols]) / (down - up)
    gx = (image[rows, right] - image[rows, left]) / (right - left)
    return np.hypot(gy, gx)
