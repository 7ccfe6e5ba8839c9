"""Rigid in-plane motion during a segmented k-space acquisition (after Shaw et al., MIDL 2019,
http://proceedings.mlr.press/v102/shaw19a.html, and TorchIO's ``Motion``): each group of k-space
lines is read while the subject holds a different pose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from .kspace import _centred_position, _check_axis, _check_severity, _lines, _magnitude, check_image


@dataclass(frozen=True)
class MotionParams:
    """Rigid in-plane motion during the acquisition.

    Attributes:
        times: sorted fractions (0..1) of the acquisition at which the subject moves; n moves
            split the acquisition into n + 1 segments.
        angles: in-plane rotation (degrees, about the image centre) during each of the n + 1
            segments.
        translations: (dy, dx) shift in pixels during each segment.
        axis: phase-encode axis; k-space lines perpendicular to it are read one at a time.
        shots: 1 reads lines linearly from -kmax to +kmax; s > 1 interleaves them over s shots
            (line i in shot i mod s), as segmented turbo spin echo does.
    """

    times: tuple[float, ...]
    angles: tuple[float, ...]
    translations: tuple[tuple[float, float], ...]
    axis: int = 0
    shots: int = 1

    def __post_init__(self) -> None:
        _check_axis("axis", self.axis)
        if self.shots < 1:
            raise ValueError(f"shots must be >= 1, got {self.shots!r}")
        if any(not 0.0 <= t <= 1.0 for t in self.times) or list(self.times) != sorted(self.times):
            raise ValueError(f"times must be sorted fractions in [0, 1], got {self.times!r}")
        segments = len(self.times) + 1
        if len(self.angles) != segments or len(self.translations) != segments:
            raise ValueError(
                f"need len(times) + 1 = {segments} angles and translations, got "
                f"{len(self.angles)} angles and {len(self.translations)} translations"
            )
        if any(len(t) != 2 for t in self.translations):
            raise ValueError(f"translations must be (dy, dx) pairs, got {self.translations!r}")


def _acquisition_times(n: int, shots: int) -> np.ndarray:
    """Fraction of the acquisition elapsed when each DFT line (unshifted order) is read."""
    position = _centred_position(n)
    per_shot = -(-n // shots)
    rank = (position % shots) * per_shot + position // shots
    return rank / (shots * per_shot)


def _rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Bilinear rotation about the centre, zeros outside; equals ``ndimage.rotate(image, angle,
    reshape=False, order=1)`` to float32 precision at about half its cost."""
    h, w = image.shape
    c, s = np.float32(np.cos(np.deg2rad(angle))), np.float32(np.sin(np.deg2rad(angle)))
    y = np.arange(h, dtype=np.float32)[:, None] - np.float32((h - 1) / 2)
    x = np.arange(w, dtype=np.float32)[None, :] - np.float32((w - 1) / 2)
    sy = c * y + (s * x + np.float32((h - 1) / 2))  # where each output pixel samples the input
    sx = c * x - (s * y - np.float32((w - 1) / 2))
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = sy - y0, sx - x0
    # Clip into a 2-pixel zero border so that samples far outside read two zeros.
    np.clip(y0, -2, h, out=y0)
    np.clip(x0, -2, w, out=x0)
    stride = w + 4
    index = (y0.astype(np.int32) + 2) * stride + (x0.astype(np.int32) + 2)
    padded = np.pad(image, 2).ravel()
    top = padded[index] + fx * (padded[index + 1] - padded[index])
    index += stride
    bottom = padded[index] + fx * (padded[index + 1] - padded[index])
    return top + fy * (bottom - top)


def _posed_kspace(image: np.ndarray, angle: float, shift: tuple[float, float]) -> np.ndarray:
    kspace = scipy.fft.fft2(_rotate(image, angle) if angle != 0.0 else image)
    if shift[0] != 0.0 or shift[1] != 0.0:
        # A shift is a linear phase ramp; it is separable, so two 1-D exponentials suffice.
        ramp_y = np.exp(-2j * np.pi * np.fft.fftfreq(image.shape[0]) * shift[0])
        ramp_x = np.exp(-2j * np.pi * np.fft.fftfreq(image.shape[1]) * shift[1])
        kspace = kspace * np.outer(ramp_y, ramp_x).astype(np.complex64)
    return kspace


def apply_motion(image: np.ndarray, params: MotionParams) -> np.ndarray:
    """Each k-space line comes from the spectrum of the subject in the pose it had when read."""
    image = check_image(image)
    read_at = _acquisition_times(image.shape[params.axis], params.shots)
    segment = np.searchsorted(np.asarray(params.times), read_at, "right")
    kspace = np.zeros(image.shape, np.complex64)
    for s in np.unique(segment):
        posed = _posed_kspace(image, params.angles[s], params.translations[s])
        kspace = np.where(_lines(segment == s, params.axis), posed, kspace)
    return _magnitude(kspace)


# (moves low, moves high, half-width of the window of move times around the moment the
# k-space centre is read for (linear, interleaved) order, least fraction of lines read in a
# displaced pose, per-move rotation in degrees, per-move translation in pixels). Moves while only
# the periphery of k-space is read barely show (edges alone), so stronger severities move nearer
# the centre and displace more lines. In linear order time is |k|, hence the narrower window.
_MOTION_RANGES = {
    "mild": (1, 1, (0.45, 0.45), 0.0, (0.3, 1.0), (0.3, 1.0)),
    "moderate": (1, 2, (0.1, 0.25), 0.25, (1.5, 3.5), (1.5, 3.5)),
    "severe": (2, 3, (0.06, 0.15), 0.4, (3.0, 6.0), (3.0, 6.0)),
}


def sample_motion(rng: np.random.Generator, severity: str, shape: tuple[int, ...]) -> MotionParams:
    """Random-walk poses; the segment that reads the k-space centre is the reference pose."""
    _check_severity(severity)
    lo, hi, spreads, least_moved, (a_lo, a_hi), (t_lo, t_hi) = _MOTION_RANGES[severity]
    axis = int(rng.integers(2))
    shots = int(rng.choice((1, 1, 2, 4, 8, 16)))
    spread = spreads[0] if shots == 1 else spreads[1]
    centre_time = float(_acquisition_times(shape[axis], shots)[0])  # line 0 is the DC line
    moves = int(rng.integers(lo, hi + 1))
    window = (max(0.0, centre_time - spread), min(1.0, centre_time + spread))
    for _ in range(100):  # rejection sampling; the first draw is usually accepted
        times = np.sort(rng.uniform(*window, moves))
        ref = int(np.searchsorted(times, centre_time, "right"))
        still = (times[ref] if ref < moves else 1.0) - (times[ref - 1] if ref > 0 else 0.0)
        if 1.0 - still >= least_moved:
            break
    steps_angle = rng.uniform(a_lo, a_hi, moves) * rng.choice((-1.0, 1.0), moves)
    direction = rng.uniform(0.0, 2 * np.pi, moves)
    step = rng.uniform(t_lo, t_hi, moves)
    angles = np.concatenate([[0.0], np.cumsum(steps_angle)])
    dy = np.concatenate([[0.0], np.cumsum(step * np.sin(direction))])
    dx = np.concatenate([[0.0], np.cumsum(step * np.cos(direction))])
    # Re-reference to the pose held while the k-space centre was read, so the anatomy stays in
    # place and only the artifact differs (as TorchIO does).
    angles, dy, dx = angles - angles[ref], dy - dy[ref], dx - dx[ref]
    return MotionParams(
        times=tuple(float(t) for t in times),
        angles=tuple(float(a) for a in angles),
        translations=tuple((float(y), float(x)) for y, x in zip(dy, dx, strict=True)),
        axis=axis,
        shots=shots,
    )
