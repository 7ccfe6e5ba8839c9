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
| ``gaussian_at`` | ``ndimage.gaussian_filter(image, sigma).ravel()[flat]`` | at those pixels only |

(``margin`` binary dilations with the 4-neighbour cross are a city-block distance transform,
``ndimage.distance_transform_cdt(~mask, metric="taxicab") <= margin``: :func:`model.iqm.prepare`
calls that directly.)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = [
    "erode",
    "fill_holes",
    "gaussian_at",
    "gradient_magnitude",
    "histogram",
    "median",
    "percentile",
]


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
    f = values - lo  # ((values - lo) / (hi - lo)) * bins, in one array
    f /= hi - lo
    f *= bins
    index = f.astype(np.intp)
    np.minimum(index, bins - 1, out=index)  # f <= bins: the maximum goes in the last bin
    frac = f
    frac -= index
    close = frac < 1e-6
    close |= frac > 1 - 1e-6
    near = np.flatnonzero(close)
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


def gaussian_at(image: np.ndarray, sigma: float, flat: np.ndarray) -> np.ndarray:
    """``ndimage.gaussian_filter(image, sigma).ravel()[flat]`` of a 2-D float64 ``image`` (the
    default truncate 4 and mode ``"reflect"``) at those pixels only, bit for bit: ``flat`` are
    sorted, distinct flat indices.

    scipy filters along axis 0, then along axis 1, each pass as ``correlate1d`` with the
    symmetric kernel: ``x[i] * w[0]``, then ``+= (x[i - k] + x[i + k]) * w[k]`` for k = r .. 1
    (x86-64 and aarch64 wheels: no fused multiply-add). This runs the same arithmetic, the first
    pass only where the second reads (the pixels' rows, r columns either side, reflected at the
    image's edge), the second at ``flat``.
    """
    h, w = image.shape
    r = int(4.0 * sigma + 0.5)  # scipy's radius for truncate=4
    if w <= r or h <= r or flat.size > image.size // 4:  # past a whole side; or most pixels
        return ndimage.gaussian_filter(image, sigma).ravel()[flat]
    x = np.arange(-r, r + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)  # as scipy's _gaussian_kernel1d
    weights = weights / weights.sum()
    wp = w + 2 * r  # rows with r columns of padding either side
    padded = flat + (flat // w) * (2 * r) + r  # ``flat`` in (h, wp)
    # the columns the second pass reads: r either side, the padding folded back (reflect)
    reach = np.zeros((h, wp), dtype=bool)
    reach.ravel()[np.add.outer(np.arange(-r, r + 1), padded)] = True
    need = reach[:, r : w + r].copy()
    need[:, :r] |= reach[:, r - 1 :: -1][:, :r]  # column -1 - j is column j
    need[:, w - r :] |= reach[:, : w + r - 1 : -1]  # column w + j is w - 1 - j
    # the first pass (along axis 0) there, rows reflected at the top and bottom
    rows = np.empty((h + 2 * r, w))
    rows[r : h + r] = image
    rows[:r] = image[r - 1 :: -1]
    rows[h + r :] = image[: h - r - 1 : -1]
    at = np.flatnonzero(need)
    base = at + r * w
    src = rows.ravel()
    acc = src.take(base) * weights[r]
    for k in range(r, 0, -1):
        acc += (src.take(base - k * w) + src.take(base + k * w)) * weights[r - k]
    first = np.zeros((h, wp))
    first.ravel()[at + (at // w) * (2 * r) + r] = acc
    first[:, :r] = first[:, 2 * r - 1 : r - 1 : -1]  # padding column j is column r - 1 - j
    first[:, w + r :] = first[:, w + r - 1 : w - 1 : -1]  # w + r + j is w + r - 1 - j
    # the second pass (along axis 1) at ``flat``
    src = first.ravel()
    acc = src.take(padded) * weights[r]
    for k in range(r, 0, -1):
        acc += (src.take(padded - k) + src.take(padded + k)) * weights[r - k]
    return acc
