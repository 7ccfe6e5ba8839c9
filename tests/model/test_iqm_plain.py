"""The IQM panel's faster paths give what the plain numpy / scipy of each metric's docstring gives.

``model/iqm.py`` computes several metrics by shortcuts (a Gaussian smoothing at the pixels read
only, differences and band means over precomputed indices, ...). The served fusion model was
fitted on the panel's values, so each shortcut must give the straightforward computation's value:
written out here plainly, on the pinned slices (``tests/utils/iqm_reference.py``) and on
head-like and ragged slices that take both sides of every shortcut's switch. Where the plain
code runs the same floating-point operations the values are equal bit for bit; the tolerance
below only allows for a summation order, never for a different formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from model.iqm import compute_iqms, prepare
from tests.utils.iqm_reference import reference_slices

#: relative tolerance of the comparisons (issue 18 allows a rewrite ~1e-9; these are tighter)
REL = 1e-12


def _head_like(size: int, seed: int) -> np.ndarray:
    """``bench/inference.py``'s head-like uint16 slice: a smooth ellipse, a thin edge band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    r = (yy / 0.40) ** 2 + (xx / 0.32) ** 2
    img = np.where(r < 1, 0.9, 0.0) - np.where(r < 0.8, 0.4, 0.0)
    img += 0.1 * np.sin(40 * yy + seed) * (r < 0.8)
    noise = rng.normal(0, 0.03, (2, size, size))
    return np.clip(np.hypot(img + noise[0], noise[1]) * 3000, 0, 4095).astype(np.uint16)


def _ragged(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Blobs with a long, ragged edge (as real heads have): a wide edge band."""
    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.random(shape), 3)
    img = np.where(blobs > np.quantile(blobs, 0.45), blobs, 0.0)
    return img + 0.01 * rng.random(shape)


def _slices() -> dict[str, np.ndarray]:
    slices = reference_slices()
    slices.update({f"head_like_256_{s}": _head_like(256, s) for s in (0, 1)})
    slices["head_like_200x256"] = _head_like(256, 2)[28:228]  # not square, band at the edge
    slices.update({f"ragged_{s}": _ragged((150 + 30 * s, 170), s) for s in (0, 1)})
    return slices


_SLICES = _slices()


def _plain_edge_band(head: np.ndarray) -> np.ndarray:
    """The head's edge band as :func:`model.iqm.sharpness` reads it: 2 dilations minus 2
    erosions (4-neighbour cross), or the head where that band is tiny."""
    band = ndimage.binary_dilation(head, iterations=2) & ~ndimage.binary_erosion(head, iterations=2)
    return band if band.sum() >= 16 else head


def plain_sharpness(image: np.ndarray) -> float:
    """90th percentile of |grad| of the slice smoothed (sigma 0.7) over the head's edge band, over
    the foreground median."""
    p = prepare(image)
    band = _plain_edge_band(p.head)
    if not band.any():
        return 0.0
    grad = np.hypot(*np.gradient(ndimage.gaussian_filter(p.image, 0.7)))
    return float(np.percentile(grad[band], 90) / p.level)


def _plain_kspace(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|FFT| of the scaled slice (mean removed), and the k-space radius in cycles/px, with the
    frequency along each axis."""
    x = prepare(image).image
    mag = np.abs(np.fft.fft2(x - x.mean()))
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    return mag, np.hypot(fy, fx), (fy, fx)


def plain_kspace_roughness(image: np.ndarray) -> float:
    """abs log ratio of mean abs(difference of adjacent lines) of log k-space power along axis 0
    and axis 1, at 0.05-0.35 cycles/px."""
    mag, radius, _ = _plain_kspace(image)
    log = np.log(mag**2 + 1e-12 * mag.max() ** 2 + 1e-30)
    mid = (radius > 0.05) & (radius < 0.35)
    r0 = np.abs(np.diff(log, axis=0))[mid[:-1]].mean()
    r1 = np.abs(np.diff(log, axis=1))[mid[:, :-1]].mean()
    return abs(float(np.log((r0 + 1e-12) / (r1 + 1e-12))))


def plain_kspace_anisotropy(image: np.ndarray) -> float:
    """abs log ratio of the mean power within ~27 degrees of the k_0 axis to that of the k_1 axis,
    at 0.08-0.3 cycles/px."""
    mag, radius, (fy, fx) = _plain_kspace(image)
    power = mag**2
    band = (radius > 0.08) & (radius < 0.3)
    e0 = power[(np.abs(fy) > 2 * np.abs(fx)) & band].mean() + 1e-30
    e1 = power[(np.abs(fx) > 2 * np.abs(fy)) & band].mean() + 1e-30
    return abs(float(np.log(e0 / e1)))


def plain_hf_energy(image: np.ndarray) -> float:
    """Share of the k-space power beyond 0.25 cycles/px."""
    mag, radius, _ = _plain_kspace(image)
    power = mag**2
    return float(power[radius > 0.25].sum() / power.sum()) if power.sum() > 0 else 0.0


def plain_snr(image: np.ndarray) -> float:
    """Foreground median over Immerkaer's sigma: sqrt(pi / 2) / (6 (H - 2)(W - 2)) times the sum
    of abs(the slice convolved with [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]) over its interior."""
    p = prepare(image)
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = ndimage.convolve(p.image, kernel)[1:-1, 1:-1]
    h, w = response.shape
    sigma = np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * h * w)
    return float(p.level / max(sigma, 1e-6))


def plain_qi1(image: np.ndarray) -> float:
    """Share of the smoothed air above median + 5 robust sigma (at least 2 % of the level)."""
    p = prepare(image)
    air = p.smooth[p.air]
    if air.size < 16:
        return 0.0
    med = np.median(air)
    floor = max(med + 5 * 1.4826 * np.median(np.abs(air - med)), 0.02 * p.level)
    return float(np.mean(air > floor))


def plain_ghost_lines(image: np.ndarray) -> tuple[float, float]:
    """Mean smoothed air above / below and left / right of the head minus that of the corners."""
    p = prepare(image)
    in_rows = p.head.any(axis=1)[:, None] & np.ones(p.head.shape, bool)
    in_cols = p.head.any(axis=0)[None, :] & np.ones(p.head.shape, bool)
    corner = p.air & ~in_rows & ~in_cols
    if corner.sum() >= 16:
        base = p.smooth[corner].mean()
    elif p.air.sum() >= 16:
        base = np.percentile(p.smooth[p.air], 25)
    else:
        return 0.0, 0.0
    out = []
    for region in (p.air & in_cols & ~in_rows, p.air & in_rows & ~in_cols):
        out.append(float((p.smooth[region].mean() - base) / p.level) if region.sum() >= 16 else 0.0)
    return out[0], out[1]


def plain_bg_autocorr(image: np.ndarray) -> float:
    """Largest lag-2 autocorrelation of the air (its mean removed) along either axis."""
    p = prepare(image)
    if p.air.sum() < 64:
        return 0.0
    x = np.where(p.air, p.image - p.image[p.air].mean(), 0.0)
    var = (x * x).sum() / p.air.sum()
    if var < 1e-12:
        return 0.0
    out = []
    for a, b, m in (
        (x[:-2], x[2:], p.air[:-2] & p.air[2:]),
        (x[:, :-2], x[:, 2:], p.air[:, :-2] & p.air[:, 2:]),
    ):
        out.append(float((a * b).sum()) / m.sum() / var if m.sum() else 0.0)
    return max(out)


PLAIN = {
    "snr": plain_snr,
    "qi1": plain_qi1,
    "ghost_rows": lambda image: plain_ghost_lines(image)[0],
    "ghost_cols": lambda image: plain_ghost_lines(image)[1],
    "bg_autocorr": plain_bg_autocorr,
    "bg_fraction": lambda image: float(prepare(image).air.mean()),
    "sharpness": plain_sharpness,
    "kspace_roughness": plain_kspace_roughness,
    "kspace_anisotropy": plain_kspace_anisotropy,
    "hf_energy": plain_hf_energy,
}


@pytest.mark.parametrize("name", sorted(_SLICES))
def test_the_panel_equals_the_plain_computation(name: str) -> None:
    image = _SLICES[name]
    values = compute_iqms(image)
    for metric, plain in PLAIN.items():
        expected = plain(image)
        assert values[metric] == pytest.approx(expected, rel=REL, abs=1e-15), metric


def test_the_slices_take_both_sides_of_the_sharpness_switch() -> None:
    """The edge band is smoothed alone when it is thin (head-like slices) and with the whole
    slice when it is wide (ragged slices): both are compared above."""
    widths = {}
    for name, image in _SLICES.items():
        p = prepare(image)
        widths[name] = _plain_edge_band(p.head).mean()
    assert widths["head_like_256_0"] < 1 / 16 < widths["ragged_0"]
