"""Realism augmentation: the variety of clean clinical scans, applied to both classes.

The training sources are a few T1 brains and smooth templates, while clinical series come in
every contrast, matrix, noise level, bias field, field of view and orientation. A classifier that
only ever saw clean T1 templates would flag a clean T2 or a noisy DWI as an artifact, so every
training slice, clean or corrupted, first gets a random draw of these nuisance variations.

As in :mod:`.artifacts`, each operation is a frozen dataclass of parameters applied by a
deterministic function, and :func:`random_realism` returns a JSON-serialisable record that
:func:`apply_realism` re-applies exactly. Operations run in acquisition order: orientation,
contrast, fat suppression, bias field, field of view, EPI distortion, resolution, ringing, noise,
display (8-bit rendering).

Shape: the output shape may differ from the input. ``Orient`` may transpose it; ``FieldOfView``
crops each side by at most 8 % or pads it by at most 25 % of that side; ``Resolution`` resamples
so that the longer side is 128..320 pixels (aspect kept). Output is float32, finite and
non-negative, on the input's intensity scale (its 99.5th percentile stays of the same order).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .artifacts import GibbsParams, apply_gibbs, check_image


def _scale(image: np.ndarray) -> float:
    """Robust intensity scale: the 99.5th percentile (the maximum if that is 0)."""
    return float(np.percentile(image, 99.5)) or float(image.max())


def _upsample(coarse: np.ndarray, shape: tuple[int, ...], step: int) -> np.ndarray:
    """Separable linear interpolation of samples taken every ``step`` pixels up to ``shape``.
    (Gathers, not a BLAS product: BLAS threads stall in busy DataLoader workers.)"""
    out = coarse
    for axis in (0, 1):
        n_in = coarse.shape[axis]
        pos = np.clip(np.arange(shape[axis]) / step, 0, n_in - 1)
        low = np.minimum(np.floor(pos).astype(int), max(n_in - 2, 0))
        high = np.minimum(low + 1, n_in - 1)
        frac = (pos - low).astype(np.float32)
        frac = frac[:, None] if axis == 0 else frac[None, :]
        a, b = np.take(out, low, axis=axis), np.take(out, high, axis=axis)
        out = a + frac * (b - a)
    return out


def head_mask(image: np.ndarray) -> np.ndarray:
    """Soft (0..1) (H, W) mask of the object: threshold at 10 % of the scale, open, fill holes,
    erode two coarse pixels and smooth, so the 0..1 transition lies on tissue, not background.
    Computed on a ~64-pixel subsample (it only needs to be coarse) for speed."""
    scale = _scale(image)
    if scale <= 0:
        return np.zeros(image.shape, np.float32)
    step = max(1, min(image.shape) // 64)
    coarse = image[::step, ::step] > 0.1 * scale
    solid = ndimage.binary_fill_holes(ndimage.binary_opening(coarse))
    solid = ndimage.binary_erosion(solid, iterations=2)
    soft = ndimage.gaussian_filter(solid.astype(np.float32), 0.7)
    return np.clip(_upsample(soft, image.shape, step), 0.0, 1.0)


@dataclass(frozen=True)
class Orient:
    """Flips then ``rot90`` quarter turns (counter-clockwise)."""

    flip_rows: bool = False
    flip_cols: bool = False
    rot90: int = 0


def apply_orient(image: np.ndarray, p: Orient) -> np.ndarray:
    out = image[::-1] if p.flip_rows else image
    out = out[:, ::-1] if p.flip_cols else out
    return np.ascontiguousarray(np.rot90(out, p.rot90 % 4))


@dataclass(frozen=True)
class Contrast:
    """Tissue-contrast change on intensities normalised by the 99.5th percentile.

    Attributes:
        invert: x -> 1 - x inside the head (soft mask), background stays dark: T1 -> T2-like.
        knots: piecewise-linear remapping curve [(x, y), ...] on [0, 1] (may be non-monotone),
            empty for none; values above 1 map to the last knot's y.
        gamma: exponent applied last (1 for none).
    """

    invert: bool = False
    knots: tuple[tuple[float, float], ...] = ()
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not 0.2 <= self.gamma <= 5.0:
            raise ValueError(f"gamma must be in [0.2, 5], got {self.gamma!r}")
        xs = [k[0] for k in self.knots]
        if self.knots and (xs != sorted(xs) or xs[0] != 0.0 or xs[-1] != 1.0):
            raise ValueError(f"knots must be sorted in x from 0 to 1, got {self.knots!r}")


def apply_contrast(image: np.ndarray, p: Contrast) -> np.ndarray:
    scale = _scale(image)
    if scale <= 0:
        return image.copy()
    x = np.clip(image / scale, 0.0, None)
    if p.invert:
        mask = head_mask(image)
        x = mask * (1.0 - np.minimum(x, 1.0)) + (1.0 - mask) * x
    if p.knots:
        xs, ys = zip(*p.knots, strict=True)
        x = np.interp(x, xs, ys)
    if p.gamma != 1.0:
        x = np.power(np.maximum(x, 0.0), p.gamma)
    return (x * scale).astype(np.float32)


@dataclass(frozen=True)
class Bias:
    """Multiplicative field exp(sum c_ij y^i x^j), i + j <= 3, y and x spanning [-1, 1]."""

    coefficients: tuple[float, ...] = (0.0,) * 10


_POWERS = [(i, j) for i in range(4) for j in range(4 - i)]  # the 10 monomials of degree <= 3


def _bias_field(shape: tuple[int, ...], coefficients: tuple[float, ...]) -> np.ndarray:
    # sum_ij c_ij y^i x^j = sum_i y^i (sum_j c_ij x^j): four outer products, no BLAS call.
    y = np.linspace(-1.0, 1.0, shape[0], dtype=np.float32)
    x = np.linspace(-1.0, 1.0, shape[1], dtype=np.float32)
    log_field = np.zeros(shape, np.float32)
    for i in range(4):
        row = sum(c * x**j for c, (ii, j) in zip(coefficients, _POWERS, strict=True) if ii == i)
        log_field += np.outer(y**i, row)
    return np.exp(log_field)


def apply_bias(image: np.ndarray, p: Bias) -> np.ndarray:
    return (image * _bias_field(image.shape, p.coefficients)).astype(np.float32)


@dataclass(frozen=True)
class FieldOfView:
    """Per side (top, bottom, left, right): > 0 pads zeros, < 0 crops, as a fraction of the side."""

    sides: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.sides) != 4 or any(not -0.3 <= s <= 1.0 for s in self.sides):
            raise ValueError(f"sides must be 4 fractions in [-0.3, 1], got {self.sides!r}")


def apply_fov(image: np.ndarray, p: FieldOfView) -> np.ndarray:
    h, w = image.shape
    top, bottom, left, right = (round(f * n) for f, n in zip(p.sides, (h, h, w, w), strict=True))
    out = image[max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    pad = ((max(0, top), max(0, bottom)), (max(0, left), max(0, right)))
    return np.pad(out, pad).astype(np.float32)


@dataclass(frozen=True)
class Distortion:
    """Echo-planar geometry: susceptibility distortion and signal dropout, as every clean DWI / EPI
    slice shows near the sinuses and petrous bones (none of it is an artifact a radiographer
    repeats a sequence for, and the training sources, all T1, have none of it).

    Attributes:
        axis: the phase-encode axis (0 rows, 1 columns), along which pixels are displaced.
        bumps: ``(cy, cx, width, shift)`` Gaussian bumps of the displacement field: centre and
            width as fractions of the image (0..1), peak shift as a fraction of the side along
            ``axis`` (signed, |shift| <= 0.08). Intensity follows the field's Jacobian: signal
            piles up where the field compresses the image and thins where it stretches it.
        dropouts: ``(cy, cx, width, depth)`` Gaussian blobs where signal is lost (depth 0..0.95).
    """

    axis: int = 0
    bumps: tuple[tuple[float, float, float, float], ...] = ()
    dropouts: tuple[tuple[float, float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.axis not in (0, 1):
            raise ValueError(f"axis must be 0 or 1, got {self.axis!r}")
        for *_, width, shift in self.bumps:
            if not (0 < width <= 1 and abs(shift) <= 0.08):
                raise ValueError(f"bump needs 0 < width <= 1, |shift| <= 0.08, got {shift!r}")
        for *_, width, depth in self.dropouts:
            if not (0 < width <= 1 and 0 <= depth <= 0.95):
                raise ValueError(f"dropout needs 0 < width <= 1, depth <= 0.95, got {depth!r}")


def _blobs(
    shape: tuple[int, ...], blobs: tuple[tuple[float, float, float, float], ...]
) -> np.ndarray:
    """Sum of amplitude * exp(-r^2 / 2 width^2) over ``(cy, cx, width, amplitude)`` blobs."""
    y = np.linspace(0.0, 1.0, shape[0], dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, shape[1], dtype=np.float32)[None, :]
    out = np.zeros(shape, np.float32)
    for cy, cx, width, amplitude in blobs:
        out += amplitude * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    return out


def apply_distortion(image: np.ndarray, p: Distortion) -> np.ndarray:
    out = image
    if p.bumps:
        shift = _blobs(image.shape, p.bumps) * image.shape[p.axis]  # pixels along the axis
        grid = np.indices(image.shape, dtype=np.float32)
        grid[p.axis] -= shift  # pixel y' shows the tissue at y' - shift(y')
        out = ndimage.map_coordinates(image, grid, order=1, mode="constant", cval=0.0)
        # signal conservation, I'(y') dy' = I(y) dy with y = y' - shift(y'): where the shift
        # falls along the axis the tissue is compressed and piles up, where it rises it thins
        density = 1.0 - np.gradient(shift, axis=p.axis)
        out = out * np.clip(density, 0.3, 3.0)
    if p.dropouts:
        out = out * (1.0 - np.clip(_blobs(image.shape, p.dropouts), 0.0, 0.95))
    return out.astype(np.float32)


@dataclass(frozen=True)
class FatSuppression:
    """The rim of a fat-suppressed (or EPI) head: brain, a dark gap, a faint thin outer ring.

    DWI b0 and EPI slices are fat-suppressed: the scalp, bright in every T1 training source,
    goes dark and leaves only a thin faint line of skin a few millimetres outside the brain,
    which a classifier trained on T1 alone reads as a ghost of the head.

    Attributes:
        gap: width of the dark band, as a fraction of the shorter side (0.01..0.1). With
            ``mode="suppress"`` it is the outer band of the head (scalp, skull) darkened to
            ``level``, except its outermost ``ring`` fraction; with ``mode="ring"`` (for a brain
            without scalp) it is the distance outside the head at which a ring is added.
        ring: width of the outer ring as a fraction of the shorter side (0.003..0.05).
        level: intensity of the suppressed band, relative to what it was (0..0.5).
        ring_level: intensity of the ring, relative to the original rim (``suppress``) or to
            the head's 99.5th percentile (``ring``), 0.02..0.8.
        mode: ``"suppress"`` or ``"ring"``.
    """

    gap: float = 0.03
    ring: float = 0.01
    level: float = 0.1
    ring_level: float = 0.3
    mode: str = "suppress"

    def __post_init__(self) -> None:
        if self.mode not in ("suppress", "ring"):
            raise ValueError(f"mode must be 'suppress' or 'ring', got {self.mode!r}")
        if not (0.01 <= self.gap <= 0.1 and 0.003 <= self.ring <= 0.05):
            raise ValueError(
                f"need 0.01 <= gap <= 0.1 and 0.003 <= ring <= 0.05, got {self.gap}, {self.ring}"
            )
        if not (0.0 <= self.level <= 0.5 and 0.02 <= self.ring_level <= 0.8):
            raise ValueError(
                f"need 0 <= level <= 0.5 and 0.02 <= ring_level <= 0.8, "
                f"got {self.level}, {self.ring_level}"
            )


def apply_fat_suppression(image: np.ndarray, p: FatSuppression) -> np.ndarray:
    head = ndimage.binary_fill_holes(image > 0.1 * _scale(image))
    if not head.any():
        return image.astype(np.float32)
    side = min(image.shape)
    gap, ring = max(1.0, p.gap * side), max(1.0, p.ring * side)
    if p.mode == "suppress":
        depth = ndimage.distance_transform_edt(head)  # inside: distance to the background
        band = ndimage.gaussian_filter(((depth > 0) & (depth <= ring + gap)).astype(np.float32), 1)
        rim = ndimage.gaussian_filter(((depth > 0) & (depth <= ring)).astype(np.float32), 0.7)
        # the band darkens to `level`, its outermost `ring` pixels only to `ring_level`
        factor = 1.0 - band * (1.0 - p.level) + rim * (p.ring_level - p.level)
        return (image * np.clip(factor, 0.0, 1.0)).astype(np.float32)
    outside = ndimage.distance_transform_edt(~head)  # outside: distance to the head
    shell = ((outside > gap) & (outside <= gap + ring)).astype(np.float32)
    added = ndimage.gaussian_filter(shell, 0.7) * p.ring_level * _scale(image)
    return (image + added).astype(np.float32)


@dataclass(frozen=True)
class Resolution:
    """Acquire at 1/``factor`` of the resolution (but never below ``MIN_ACQUIRED_SIDE`` pixels
    on the shorter side), then show on a matrix whose longer side is ``size`` (aspect kept)."""

    factor: float = 1.0
    size: int = 256

    def __post_init__(self) -> None:
        if not 1.0 <= self.factor <= 5.0:
            raise ValueError(f"factor must be in [1, 5], got {self.factor!r}")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024], got {self.size!r}")


def _resize(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resampling to ``shape``, pixel centres aligned; Gaussian anti-alias if shrinking."""
    ratio = np.array(image.shape) / np.array(shape)
    if (ratio > 1).any():
        image = ndimage.gaussian_filter(image, np.maximum(ratio - 1.0, 0.0) / 2)
    return ndimage.affine_transform(
        image, ratio, offset=0.5 * ratio - 0.5, output_shape=shape, order=1, mode="nearest"
    )


#: The smallest acquired matrix side a lower resolution goes down to (a 64 x 64 EPI, or 48 for
#: the coarsest clinical DWI): a 4.5x draw on a 58-pixel DWI slice would otherwise be a 13-pixel
#: acquisition, an image a radiographer would repeat, not a clean one.
MIN_ACQUIRED_SIDE = 48


def apply_resolution(image: np.ndarray, p: Resolution) -> np.ndarray:
    h, w = image.shape
    factor = max(1.0, min(p.factor, min(h, w) / MIN_ACQUIRED_SIDE))
    low = _resize(image, (max(8, round(h / factor)), max(8, round(w / factor))))
    ratio = p.size / max(h, w)
    return _resize(low, (max(8, round(h * ratio)), max(8, round(w * ratio)))).astype(np.float32)


@dataclass(frozen=True)
class Coarse:
    """A coarse acquisition as echo-planar DWI and BOLD are read: shown on a small matrix whose
    longer side is ``size`` (48..128 pixels), each axis acquired at 1/``factors[a]`` of that
    matrix (anisotropic voxels such as 4 x 4 x 5 mm, or a reduced phase-encode resolution) and
    interpolated up to it. A radiographer does not repeat a scan for this: it is clean."""

    factors: tuple[float, float] = (1.0, 1.0)
    size: int = 96

    def __post_init__(self) -> None:
        if len(self.factors) != 2 or not all(1.0 <= f <= 4.0 for f in self.factors):
            raise ValueError(f"factors must be two values in [1, 4], got {self.factors!r}")
        if not 32 <= self.size <= 256:
            raise ValueError(f"size must be in [32, 256], got {self.size!r}")


def apply_coarse(image: np.ndarray, p: Coarse) -> np.ndarray:
    h, w = image.shape
    ratio = p.size / max(h, w)
    shown = (max(8, round(h * ratio)), max(8, round(w * ratio)))
    acquired = tuple(max(8, round(n / f)) for n, f in zip(shown, p.factors, strict=True))
    return _resize(_resize(image, acquired), shown).astype(np.float32)


@dataclass(frozen=True)
class Ringing:
    """Slight k-space truncation, as clean clinical images show; ``keep`` >= 0.75 keeps it far
    milder than :func:`training.simulate.artifacts.sample_gibbs` "moderate" (keep <= 0.42)."""

    keep: float = 1.0
    axes: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        if not 0.75 <= self.keep <= 1.0:
            raise ValueError(f"keep must be in [0.75, 1], got {self.keep!r}")


def apply_ringing(image: np.ndarray, p: Ringing) -> np.ndarray:
    return apply_gibbs(image, GibbsParams(keep=p.keep, axes=p.axes))


@dataclass(frozen=True)
class Noise:
    """Rician noise: magnitude of the image plus complex Gaussian noise of standard deviation
    (mean foreground intensity) / ``snr``; ``seed`` fixes the noise realisation."""

    snr: float = 100.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.snr <= 0:
            raise ValueError(f"snr must be > 0, got {self.snr!r}")


def apply_noise(image: np.ndarray, p: Noise) -> np.ndarray:
    foreground = image[image > 0.1 * _scale(image)]
    level = float(foreground.mean()) if foreground.size else float(image.mean())
    sigma = np.float32(level / p.snr)
    noise = np.random.default_rng(p.seed).standard_normal((2, *image.shape), dtype=np.float32)
    return np.hypot(image + sigma * noise[0], sigma * noise[1]).astype(np.float32)


@dataclass(frozen=True)
class Display:
    """Rendering for a screen or a file, as in the 8-bit PNG/JPEG exports people send: window
    between the ``low`` and ``high`` percentiles (below black, above saturated white), quantise
    to 8 bits, and JPEG-compress at ``jpeg_quality`` (0 for none). Back on the input's scale."""

    low: float = 0.0
    high: float = 100.0
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"need 0 <= low < high <= 100, got {self.low!r}, {self.high!r}")
        if self.jpeg_quality != 0 and not 10 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 0 or in [10, 100], got {self.jpeg_quality!r}")


def apply_display(image: np.ndarray, p: Display) -> np.ndarray:
    lo, hi = (float(v) for v in np.percentile(image, (p.low, p.high)))
    if hi <= lo:
        return image.copy()
    grey = np.round(np.clip((image - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
    if p.jpeg_quality:
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=p.jpeg_quality)
        buffer.seek(0)
        grey = np.asarray(Image.open(buffer).convert("L"))
    return (grey.astype(np.float32) / 255.0 * _scale(image)).astype(np.float32)


_OPS: dict[str, tuple[type[Any], Callable[[np.ndarray, Any], np.ndarray]]] = {
    "orient": (Orient, apply_orient),
    "contrast": (Contrast, apply_contrast),
    "bias": (Bias, apply_bias),
    "fov": (FieldOfView, apply_fov),
    "distortion": (Distortion, apply_distortion),
    "fat_suppression": (FatSuppression, apply_fat_suppression),
    "resolution": (Resolution, apply_resolution),
    "coarse": (Coarse, apply_coarse),
    "ringing": (Ringing, apply_ringing),
    "noise": (Noise, apply_noise),
    "display": (Display, apply_display),
}


def _sample_contrast(rng: np.random.Generator) -> Contrast:
    knots: tuple[tuple[float, float], ...] = ()
    if rng.random() < 0.5:
        # Interior knots start at 0.08 so the background (near 0) stays dark; y values are free,
        # so the curve can be non-monotone (e.g. dark white matter, bright grey matter).
        xs = np.sort(rng.uniform(0.08, 0.95, int(rng.integers(2, 6))))
        ys = rng.uniform(0.0, 1.0, xs.size)
        knots = ((0.0, 0.0), *zip(xs.tolist(), ys.tolist(), strict=True), (1.0, ys.max()))
    return Contrast(
        invert=bool(rng.random() < 0.3),
        knots=knots,
        gamma=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))) if rng.random() < 0.5 else 1.0,
    )


def _sample_bias(rng: np.random.Generator) -> Bias:
    """Random degree-3 polynomial scaled so its log-field peaks at 0.1..0.6 (x0.55..x1.8)."""
    raw = rng.uniform(-1.0, 1.0, len(_POWERS))
    raw[0] = 0.0
    peak = np.abs(np.log(_bias_field((32, 32), tuple(raw.tolist())))).max()
    strength = rng.uniform(0.1, 0.6)
    return Bias(coefficients=tuple((raw * strength / max(peak, 1e-6)).tolist()))


#: Rician noise levels drawn (log-uniform), as mean foreground / sigma. The floor is 10: below
#: it, moderate spikes and Gibbs ringing (relative RMS 0.02-0.05 of the foreground) vanish under
#: the noise, and a label the image cannot support only teaches the classifier to guess. Clinical
#: brain MR (b0 DWI included) sits at or above it.
SNR_RANGE = (10.0, 100.0)

#: Coarsest acquisition drawn (factor over the source's ~1 mm; log-uniform from 1): a 1 mm
#: source at 4.5x is a 58-px matrix, as in anisotropic DWI and EPI. Up to 2.5x (the earlier
#: range), the served model flagged 55 % of clean test slices shown at 3x and 77 % at 4.4x.
RESOLUTION_MAX = 4.5

#: Share of training slices given echo-planar geometry (``Distortion``): clean DWI b0 and EPI
#: slices drew most of the served model's false alarms (57 % on the anisotropic DWI volume).
DISTORTION_PROBABILITY = 0.3


def _sample_distortion(rng: np.random.Generator) -> Distortion:
    """1-3 displacement bumps (peak 1-5 % of the side) inside the middle of the image, and 0-2
    dropout blobs (30-90 % signal lost), along a random phase-encode axis."""
    bumps = tuple(
        (
            float(rng.uniform(0.2, 0.8)),
            float(rng.uniform(0.2, 0.8)),
            float(rng.uniform(0.08, 0.25)),
            float(rng.choice((-1.0, 1.0)) * rng.uniform(0.01, 0.05)),
        )
        for _ in range(int(rng.integers(1, 4)))
    )
    dropouts = tuple(
        (
            float(rng.uniform(0.25, 0.75)),
            float(rng.uniform(0.25, 0.75)),
            float(rng.uniform(0.04, 0.12)),
            float(rng.uniform(0.3, 0.9)),
        )
        for _ in range(int(rng.integers(0, 3)))
    )
    return Distortion(axis=int(rng.integers(2)), bumps=bumps, dropouts=dropouts)


#: Share of training slices given a fat-suppressed rim (``FatSuppression``): the clean DWI b0
#: validation slices the served model flagged most all show the dark gap and faint outer ring.
FAT_SUPPRESSION_PROBABILITY = 0.25


def _sample_fat_suppression(rng: np.random.Generator) -> FatSuppression:
    """Suppress the scalp band (70 %) or add a ring outside a scalp-less head (30 %)."""
    return FatSuppression(
        gap=float(rng.uniform(0.015, 0.06)),
        ring=float(rng.uniform(0.005, 0.02)),
        level=float(rng.uniform(0.0, 0.25)),
        ring_level=float(rng.uniform(0.1, 0.6)),
        mode="suppress" if rng.random() < 0.7 else "ring",
    )


#: Share of training slices rendered as an 8-bit, windowed and possibly JPEG-compressed export
#: (``Display``): clean PNG/JPEG files must not look like artifacts to the classifier.
DISPLAY_PROBABILITY = 0.3


def _insert_before(ops: list[tuple[str, Any]], later: tuple[str, ...], op: tuple[str, Any]) -> None:
    """Insert ``op`` before the first of ``ops`` named in ``later`` (at the end if none is)."""
    at = next((i for i, (name, _) in enumerate(ops) if name in later), len(ops))
    ops.insert(at, op)


def _sample_coarse(rng: np.random.Generator) -> Coarse:
    factors = [float(rng.uniform(1.0, 1.5)), float(rng.uniform(1.0, 3.0))]
    if rng.random() < 0.5:
        factors.reverse()  # either axis may be the coarse (phase-encode) one
    return Coarse((factors[0], factors[1]), int(rng.integers(48, 129)))


def sample_realism(
    rng: np.random.Generator, *, coarse_probability: float = 0.0
) -> list[tuple[str, Any]]:
    """Draw the operations (name, params) to apply, each with its own probability.

    ``coarse_probability`` is the chance of a :class:`Coarse` acquisition (small matrix,
    anisotropic voxels); at 0 (the default) nothing is drawn for it, so every record is what it
    was before the op existed (the evaluation splits and the CNN's patch stream are unchanged).
    """
    if not 0.0 <= coarse_probability <= 1.0:
        raise ValueError(f"coarse_probability must be in [0, 1], got {coarse_probability!r}")
    ops: list[tuple[str, Any]] = [
        (
            "orient",
            Orient(bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(4))),
        )
    ]
    if rng.random() < 0.8:
        ops.append(("contrast", _sample_contrast(rng)))
    if rng.random() < 0.5:
        ops.append(("bias", _sample_bias(rng)))
    if rng.random() < 0.5:
        top, bottom, left, right = (float(s) for s in rng.uniform(-0.08, 0.25, 4))
        ops.append(("fov", FieldOfView((top, bottom, left, right))))
    if rng.random() < 0.5:
        ops.append(
            (
                "resolution",
                Resolution(
                    float(np.exp(rng.uniform(0.0, np.log(RESOLUTION_MAX)))),
                    int(rng.integers(128, 321)),
                ),
            )
        )
    if rng.random() < 0.3:
        axes = ((0,), (1,), (0, 1))[int(rng.integers(3))]
        ops.append(("ringing", Ringing(float(rng.uniform(0.8, 0.95)), axes)))
    if rng.random() < 0.7:
        snr = float(np.exp(rng.uniform(np.log(SNR_RANGE[0]), np.log(SNR_RANGE[1]))))
        ops.append(("noise", Noise(snr, int(rng.integers(2**31)))))
    if rng.random() < DISPLAY_PROBABILITY:
        low = float(rng.uniform(0.0, 20.0)) if rng.random() < 0.5 else 0.0
        quality = int(rng.integers(60, 96)) if rng.random() < 0.5 else 0
        ops.append(("display", Display(low, float(rng.uniform(97.0, 100.0)), quality)))
    # Drawn last so that every earlier draw (and so every earlier evaluation image) is unchanged;
    # applied where it happens, on the object before it is sampled at its resolution.
    if rng.random() < DISTORTION_PROBABILITY:
        _insert_before(
            ops, ("resolution", *ACQUISITION_OPS), ("distortion", _sample_distortion(rng))
        )
    # Drawn after that for the same reason; it changes tissue contrast, so it goes before the
    # bias field (a coil's sensitivity) and everything after it.
    if rng.random() < FAT_SUPPRESSION_PROBABILITY:
        after = ("bias", "fov", "distortion", "resolution", *ACQUISITION_OPS)
        _insert_before(ops, after, ("fat_suppression", _sample_fat_suppression(rng)))
    # Drawn after everything else (and only when asked for); read before noise and rendering.
    if coarse_probability > 0 and rng.random() < coarse_probability:
        _insert_before(ops, ACQUISITION_OPS, ("coarse", _sample_coarse(rng)))
    return ops


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def apply_realism(image: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """Re-apply a record from :func:`random_realism` (or ``json.loads`` of one) exactly."""
    out = check_image(image)
    for op in record["ops"]:
        name = op.get("op")
        if name not in _OPS:
            raise ValueError(f"op must be one of {tuple(_OPS)}, got {name!r}")
        cls, fn = _OPS[name]
        out = fn(out, cls(**{k: _tuples(v) for k, v in op.items() if k != "op"}))
    return np.maximum(out, 0.0).astype(np.float32)


def random_realism(
    image: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Random contrast, resolution, noise, bias, FOV and orientation for an (H, W) slice.

    Returns the float32 non-negative image (shape may change, see the module docstring) and a
    JSON-serialisable record ``{"ops": [{"op": name, **params}, ...]}``.
    """
    image = check_image(image)
    record = realism_record(rng)
    return apply_realism(image, record), record


#: Ops that happen during the acquisition itself (k-space truncation, thermal noise) or after it
#: (rendering to an 8-bit file): when an artifact is simulated they go after it, as in a
#: scanner, so e.g. Gibbs truncation cannot smooth the noise and hand the classifier a shortcut.
ACQUISITION_OPS = ("ringing", "noise", "display")


def realism_record(rng: np.random.Generator, *, coarse_probability: float = 0.0) -> dict[str, Any]:
    """A JSON-serialisable realism record ``{"ops": [...]}`` drawn by :func:`sample_realism`."""
    ops = sample_realism(rng, coarse_probability=coarse_probability)
    return {"ops": [{"op": name, **asdict(p)} for name, p in ops]}


def split_acquisition(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(object ops, acquisition ops) of a realism record, each a record of its own."""
    ops = record["ops"]
    return (
        {"ops": [op for op in ops if op["op"] not in ACQUISITION_OPS]},
        {"ops": [op for op in ops if op["op"] in ACQUISITION_OPS]},
    )
