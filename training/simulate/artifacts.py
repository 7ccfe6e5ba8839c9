"""MR acquisition artifacts simulated in k-space on 2-D magnitude slices.

Design after TorchIO's ``RandomMotion`` / ``Motion`` split (Pérez-García et al., CMPB 2021,
https://doi.org/10.1016/j.cmpb.2021.106236; motion after Shaw et al., MIDL 2019,
http://proceedings.mlr.press/v102/shaw19a.html). Every kind has

* a frozen dataclass of parameters, validated on construction (errors name the bad value);
* a deterministic ``apply_<kind>(image, params)``;
* a sampler ``sample_<kind>(rng, severity, shape)`` that draws parameters for a severity.

The parameters are the ground truth of a corruption: ``simulate`` returns them as a
JSON-serialisable record and ``apply(image, record)`` reproduces its output bit for bit.

Conventions: an image is a real, non-negative (H, W) magnitude slice in any intensity scale; the
output is the float32 magnitude of the corrupted reconstruction, same shape and scale. k-space is
the unshifted 2-D DFT; normalised k-space coordinates are cycles/pixel in [-0.5, 0.5). Axis 0 is
the row (vertical) axis; ``axis`` parameters name the phase-encode direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage

from .kspace import (
    SEVERITIES,
    _centred_position,
    _check_axis,
    _check_range,
    _check_severity,
    _lines,
    _magnitude,
    check_image,
    kspace_error,
)
from .motion import MotionParams, apply_motion, sample_motion

__all__ = [
    "KINDS",
    "SEVERITIES",
    "GhostingParams",
    "GibbsParams",
    "MotionParams",
    "SpikeParams",
    "WrapParams",
    "apply",
    "apply_ghosting",
    "apply_gibbs",
    "apply_motion",
    "apply_spike",
    "apply_wrap",
    "check_image",
    "kspace_error",
    "random_artifact",
    "sample_ghosting",
    "sample_gibbs",
    "sample_motion",
    "sample_spike",
    "sample_wrap",
    "simulate",
]

# --- ghosting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GhostingParams:
    """Periodic signal modulation along phase-encode (as TorchIO's ``Ghosting``).

    Every ``num_ghosts``-th k-space line along ``axis`` is scaled by ``1 - intensity``, which puts
    ghosts of amplitude ~``intensity / num_ghosts`` at multiples of ``n / num_ghosts`` pixels.
    The central ``restore`` fraction of lines is left untouched (keeps the object contrast).
    """

    num_ghosts: int
    axis: int
    intensity: float
    restore: float = 0.02

    def __post_init__(self) -> None:
        if self.num_ghosts < 2:
            raise ValueError(f"num_ghosts must be >= 2, got {self.num_ghosts!r}")
        _check_axis("axis", self.axis)
        _check_range("intensity", self.intensity, 0.0, 1.0)
        _check_range("restore", self.restore, 0.0, 1.0)


def apply_ghosting(image: np.ndarray, params: GhostingParams) -> np.ndarray:
    image = check_image(image)
    n = image.shape[params.axis]
    position = _centred_position(n)
    keep = np.abs(position - n // 2) < params.restore * n / 2
    modulated = (position % params.num_ghosts == 0) & ~keep
    scale = np.where(modulated, np.float32(1.0 - params.intensity), np.float32(1.0))
    return _magnitude(scipy.fft.fft2(image) * _lines(scale, params.axis))


# Amplitude of each ghost relative to the object (intensity / num_ghosts), and restore range.
_GHOSTING_RANGES = {
    "mild": ((0.02, 0.04), (0.02, 0.06)),
    "moderate": ((0.12, 0.18), (0.0, 0.03)),
    "severe": ((0.22, 0.35), (0.0, 0.02)),
}


def sample_ghosting(
    rng: np.random.Generator, severity: str, shape: tuple[int, ...]
) -> GhostingParams:
    _check_severity(severity)
    (a_lo, a_hi), (r_lo, r_hi) = _GHOSTING_RANGES[severity]
    amplitude = float(rng.uniform(a_lo, a_hi))
    # intensity = amplitude * num_ghosts must stay <= 1 (beyond, ghosts outshine the object).
    num_ghosts = int(rng.integers(2, min(6, int(1.0 / amplitude)) + 1))
    return GhostingParams(
        num_ghosts=num_ghosts,
        axis=int(rng.integers(2)),
        intensity=min(1.0, amplitude * num_ghosts),
        restore=float(rng.uniform(r_lo, r_hi)),
    )


# --- spike --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpikeParams:
    """Spikes (single corrupted k-space samples) that give herringbone stripes.

    Attributes:
        positions: normalised (ky, kx) of each spike, in [-0.5, 0.5). Each spike is added with
            its conjugate partner at (-ky, -kx), so the stripes are a real cosine that also
            crosses the background.
        intensity: spike magnitude relative to max |k| (the DC term).
    """

    positions: tuple[tuple[float, float], ...]
    intensity: float

    def __post_init__(self) -> None:
        if any(len(p) != 2 or not all(-0.5 <= c < 0.5 for c in p) for p in self.positions):
            raise ValueError(f"positions must be (ky, kx) in [-0.5, 0.5), got {self.positions!r}")
        _check_range("intensity", self.intensity, 0.0, 10.0)


def apply_spike(image: np.ndarray, params: SpikeParams) -> np.ndarray:
    image = check_image(image)
    kspace = scipy.fft.fft2(image)
    peak = np.abs(kspace).max() * params.intensity
    h, w = image.shape
    for ky, kx in params.positions:
        iy, ix = round(ky * h) % h, round(kx * w) % w
        kspace[iy, ix] += peak
        kspace[-iy % h, -ix % w] += peak
    return _magnitude(kspace)


_SPIKE_RANGES = {  # (spikes low, spikes high, intensity range)
    "mild": (1, 1, (0.008, 0.015)),
    "moderate": (1, 2, (0.03, 0.06)),
    "severe": (1, 3, (0.08, 0.15)),
}


def sample_spike(rng: np.random.Generator, severity: str, shape: tuple[int, ...]) -> SpikeParams:
    _check_severity(severity)
    lo, hi, (i_lo, i_hi) = _SPIKE_RANGES[severity]
    count = int(rng.integers(lo, hi + 1))
    radius = rng.uniform(0.05, 0.35, count)
    theta = rng.uniform(0.0, 2 * np.pi, count)
    positions = tuple(
        (float(r * np.sin(t)), float(r * np.cos(t))) for r, t in zip(radius, theta, strict=True)
    )
    return SpikeParams(positions=positions, intensity=float(rng.uniform(i_lo, i_hi)))


# --- gibbs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GibbsParams:
    """k-space truncation: only the central ``keep`` fraction is acquired along ``axes``."""

    keep: float
    axes: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {self.keep!r}")
        if not self.axes or any(a not in (0, 1) for a in self.axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1), got {self.axes!r}")


def apply_gibbs(image: np.ndarray, params: GibbsParams) -> np.ndarray:
    image = check_image(image)
    kspace = scipy.fft.fft2(image)
    for axis in params.axes:
        kept = np.abs(np.fft.fftfreq(image.shape[axis])) <= params.keep / 2
        kspace = kspace * _lines(kept, axis)
    return _magnitude(kspace)


_GIBBS_RANGES = {"mild": (0.55, 0.7), "moderate": (0.3, 0.42), "severe": (0.18, 0.26)}


def sample_gibbs(rng: np.random.Generator, severity: str, shape: tuple[int, ...]) -> GibbsParams:
    _check_severity(severity)
    axes = ((0,), (1,), (0, 1))[int(rng.integers(3))]
    return GibbsParams(keep=float(rng.uniform(*_GIBBS_RANGES[severity])), axes=axes)


# --- wrap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrapParams:
    """Wrap-around: the phase-encode field of view is smaller than the object.

    The FOV along ``axis`` is shrunk to ``1 - fraction`` of the object's extent there (found by
    thresholding the intensity profile); anatomy beyond it folds onto the opposite side (sums).
    ``position`` places the FOV within the object: 0 at its start (everything folds in from the
    far end), 0.5 centred. ``fill`` sets how the shrunken FOV is shown on the unchanged matrix:
    0 keeps the pixel size, as a rectangular-FOV image padded to square does (zero bands along
    ``axis``); 1 magnifies it to fill the matrix, so anatomy beyond the readout FOV is cut off
    (readout is oversampled and does not wrap). ``fraction == 0`` leaves the image unchanged.
    """

    axis: int
    fraction: float
    position: float = 0.5
    fill: float = 0.0

    def __post_init__(self) -> None:
        _check_axis("axis", self.axis)
        _check_range("fraction", self.fraction, 0.0, 0.8)
        _check_range("position", self.position, 0.0, 1.0)
        _check_range("fill", self.fill, 0.0, 1.0)


def _extent(profile: np.ndarray) -> tuple[int, int]:
    """First and one-past-last index of the object in a 1-D intensity profile."""
    threshold = profile.min() + 0.15 * (profile.max() - profile.min())
    inside = np.flatnonzero(profile > threshold)
    return int(inside[0]), int(inside[-1]) + 1


def apply_wrap(image: np.ndarray, params: WrapParams) -> np.ndarray:
    image = check_image(image)
    if params.fraction == 0.0 or image.max() <= image.min():
        return image.copy()
    work = image if params.axis == 0 else image.T
    n, m = work.shape
    lo, hi = _extent(work.mean(axis=1))
    fov = (hi - lo) * (1.0 - params.fraction)  # in input pixels
    zoom = 1.0 + params.fill * (n / fov - 1.0)  # exactly 1 (pixel size kept) when fill == 0
    shown = max(1, round(fov * zoom))  # output pixels the FOV occupies
    fov = shown / zoom  # whole output pixels per fold period
    start = lo + params.position * (hi - lo - fov)
    first = int(np.floor(-start / fov))  # index of the first FOV-sized block touching the image
    copies = int(np.ceil((n - start) / fov)) - first
    # Output pixel centre y of block b samples input u = start + (b + first) * fov + (y + .5) / zoom
    # - .5; the readout axis is magnified about the image centre.
    extended = ndimage.affine_transform(
        work,
        np.array([1.0 / zoom, 1.0 / zoom]),
        offset=(start + first * fov + 0.5 / zoom - 0.5, (m - m / zoom) / 2 + 0.5 / zoom - 0.5),
        output_shape=(copies * shown, m),
        order=1,
        mode="constant",
        cval=0.0,
    )
    folded = np.zeros((n, m), np.float32)
    offset = (n - shown) // 2
    folded[offset : offset + shown] = extended.reshape(copies, shown, m).sum(axis=0)
    out = folded if params.axis == 0 else folded.T
    return np.ascontiguousarray(np.maximum(out, 0.0), dtype=np.float32)


_WRAP_RANGES = {"mild": (0.03, 0.07), "moderate": (0.12, 0.2), "severe": (0.25, 0.35)}


def sample_wrap(rng: np.random.Generator, severity: str, shape: tuple[int, ...]) -> WrapParams:
    _check_severity(severity)
    return WrapParams(
        axis=int(rng.integers(2)),
        fraction=float(rng.uniform(*_WRAP_RANGES[severity])),
        position=float(rng.uniform(0.0, 1.0)),
        fill=float(rng.uniform(0.0, 1.0)),
    )


# --- registry and entry points ------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    params: type[Any]
    apply: Callable[[np.ndarray, Any], np.ndarray]
    sample: Callable[[np.random.Generator, str, tuple[int, ...]], Any]


_REGISTRY: dict[str, _Kind] = {
    "motion": _Kind(MotionParams, apply_motion, sample_motion),
    "ghosting": _Kind(GhostingParams, apply_ghosting, sample_ghosting),
    "spike": _Kind(SpikeParams, apply_spike, sample_spike),
    "gibbs": _Kind(GibbsParams, apply_gibbs, sample_gibbs),
    "wrap": _Kind(WrapParams, apply_wrap, sample_wrap),
}
KINDS: tuple[str, ...] = tuple(_REGISTRY)


def _kind(kind: str) -> _Kind:
    if kind not in _REGISTRY:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return _REGISTRY[kind]


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; turn them back so records rebuild equal dataclasses."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def simulate(
    image: np.ndarray, kind: str, severity: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Corrupt an (H, W) slice with one artifact of ``kind`` at ``severity``.

    Returns the float32 (H, W) corrupted image and a JSON-serialisable record
    ``{"kind", "severity", **params}`` that :func:`apply` re-applies exactly.
    """
    entry = _kind(kind)
    _check_severity(severity)
    image = check_image(image)
    params = entry.sample(rng, severity, image.shape)
    record = {"kind": kind, "severity": severity, **asdict(params)}
    return entry.apply(image, params), record


def apply(image: np.ndarray, record: dict[str, Any]) -> np.ndarray:
    """Re-apply a record from :func:`simulate` (or ``json.loads`` of one): same output, bitwise."""
    entry = _kind(record.get("kind", "<missing>"))
    fields = {k: _tuples(v) for k, v in record.items() if k not in ("kind", "severity")}
    return entry.apply(image, entry.params(**fields))


def random_artifact(
    image: np.ndarray,
    rng: np.random.Generator,
    kinds: tuple[str, ...] = KINDS,
    severities: tuple[str, ...] = ("moderate", "severe"),
) -> tuple[np.ndarray, dict[str, Any]]:
    """One artifact of a kind and severity drawn uniformly from ``kinds`` x ``severities``."""
    if not kinds or not severities:
        raise ValueError(f"need at least one kind and severity, got {kinds!r}, {severities!r}")
    for kind in kinds:
        _kind(kind)
    for severity in severities:
        _check_severity(severity)
    kind = kinds[int(rng.integers(len(kinds)))]
    severity = severities[int(rng.integers(len(severities)))]
    return simulate(image, kind, severity, rng)
