"""Shared k-space helpers and validation for the artifact simulators (``simulate.artifacts``,
``simulate.motion``).

Conventions: an image is a real, non-negative (H, W) magnitude slice in any intensity scale; k-space
is the unshifted 2-D DFT; normalised k-space coordinates are cycles/pixel in [-0.5, 0.5). Axis 0 is
the row (vertical) axis; ``axis`` parameters name the phase-encode direction.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

SEVERITIES = ("mild", "moderate", "severe")


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W) slice and return it as float32; ValueError names the problem."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"image must be a 2-D (H, W) array, got ndim={arr.ndim} ({arr.shape})")
    if min(arr.shape) < 8:
        raise ValueError(f"image must be at least 8x8, got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    return arr


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")


def _check_axis(name: str, axis: int) -> None:
    if axis not in (0, 1):
        raise ValueError(f"{name} must be 0 or 1, got {axis!r}")


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def _magnitude(kspace: np.ndarray) -> np.ndarray:
    return np.abs(scipy.fft.ifft2(kspace)).astype(np.float32)


def _lines(mask: np.ndarray, axis: int) -> np.ndarray:
    """A per-line mask of length n along ``axis``, shaped to broadcast over a 2-D k-space."""
    return mask[:, None] if axis == 0 else mask[None, :]


def _centred_position(n: int) -> np.ndarray:
    """Position 0..n-1 of each DFT line in -kmax..+kmax order (its index after fftshift)."""
    return (np.arange(n) + n // 2) % n


def kspace_error(original: np.ndarray, corrupted: np.ndarray) -> float:
    """Relative k-space error ||FFT(corrupted) - FFT(original)|| / ||FFT(original)||."""
    a, b = np.asarray(original, np.float64), np.asarray(corrupted, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: original {a.shape}, corrupted {b.shape}")
    ka = np.fft.fft2(a)
    return float(np.linalg.norm(np.fft.fft2(b) - ka) / np.linalg.norm(ka))
