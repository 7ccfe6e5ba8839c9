"""Intensity and size normalisation shared by training and inference.

MR intensities have no absolute scale (uint8 renders, 12-bit uint16, signed int16, floats), so
every slice is mapped to [0, 1] by robust percentiles and resized so its longer side is
``size`` pixels, then zero-padded to ``size`` x ``size``. Training and the Predictor call the same
function with the ``Normalization`` stored in the checkpoint, so what the network sees at
inference is what it saw in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Normalization:
    """How a raw slice becomes network input.

    Attributes:
        lower, upper: percentiles (0..100) mapped to 0 and 1; values outside are clipped.
        size: the longer side after resizing, and the side of the square the slice is padded to.
    """

    lower: float = 0.5
    upper: float = 99.5
    size: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower < self.upper <= 100.0:
            raise ValueError(
                f"need 0 <= lower < upper <= 100, got lower={self.lower}, upper={self.upper}"
            )
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "percentile", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        method = data.get("method", "percentile")
        if method != "percentile":
            raise ValueError(f"unknown normalization method {method!r}")
        return cls(float(data["lower"]), float(data["upper"]), int(data["size"]))


def check_slice(image: np.ndarray) -> np.ndarray:
    """Validate one 2-D slice and return it as float32. Raises ValueError naming the problem."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(
            f"expected a 2-D slice, got an array of shape {arr.shape}"
            + ("; pass a list of 2-D slices to predict a stack" if arr.ndim == 3 else "")
        )
    if arr.size == 0:
        raise ValueError(f"empty slice of shape {arr.shape}")
    if arr.dtype.kind not in "buif":
        raise ValueError(f"slice dtype must be numeric, got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"slice contains {bad} NaN/Inf value(s)")
    return arr


def scale_intensity(image: np.ndarray, norm: Normalization) -> np.ndarray:
    """Percentile-scale a float32 slice to [0, 1]; a constant slice becomes all zeros."""
    lo, hi = np.percentile(image, (norm.lower, norm.upper))
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    scaled: np.ndarray = np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return scaled


def fit_to_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (..., H, W) tensor so its longer side is ``size``, then zero-pad to a centred
    ``size`` x ``size`` square. Anti-aliased when shrinking, so noise is averaged, not aliased."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        lead = image.shape[:-2]
        flat = image.reshape(-1, 1, h, w)
        flat = F.interpolate(
            flat, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1
        )
        image = flat.reshape(*lead, new_h, new_w)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return F.pad(image, (left, size - new_w - left, top, size - new_h - top)).clamp_(0.0, 1.0)


def normalize_slice(image: np.ndarray, norm: Normalization) -> torch.Tensor:
    """Raw 2-D slice of any numeric dtype -> (1, size, size) float32 tensor in [0, 1]."""
    scaled = scale_intensity(check_slice(image), norm)
    return fit_to_square(torch.from_numpy(scaled)[None], norm.size)
