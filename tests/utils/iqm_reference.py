"""Pinned values of the IQM panel on deterministic slices, for ``tests/model/test_iqm_values.py``.

The served checkpoint's fusion model was fitted on the panel's exact values, so a rewrite of
``model/iqm.py`` for speed must reproduce them. The slices below are built from seeded phantoms
(clean, noisy, masked, artifacts, odd and non-square sizes, signed and non-finite pixels); their
panels, computed by a known-good ``model/iqm.py``, are stored in
``tests/model/data/iqm_reference.json``. Regenerate only when a metric's definition changes on
purpose (and ``PANEL_VERSION`` with it):

    .venv/bin/python -m tests.utils.iqm_reference
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from model.iqm import PANEL_VERSION, compute_iqms

from .images import make_phantom, phantom

REFERENCE = Path(__file__).resolve().parents[1] / "model" / "data" / "iqm_reference.json"


def _textured(n: int, noise: float, seed: int) -> np.ndarray:
    """``make_phantom(n)`` with tissue texture and Rician-like noise, float32."""
    rng = np.random.default_rng(seed)
    img = make_phantom(n)
    texture = ndimage.gaussian_filter(rng.standard_normal((n, n)), 2) * 0.05
    img = np.where(img > 0.05, img + texture, img)
    return np.abs(img + noise * rng.standard_normal((n, n))).astype(np.float32)


def _kspace_scaled(image: np.ndarray, axis: int, every: int, scale: float) -> np.ndarray:
    """Every ``every``-th k-space line along ``axis`` scaled: ghosts (2) or line jumps (4)."""
    k = np.fft.fft2(image)
    lines = np.where(np.arange(image.shape[axis]) % every == 1, scale, 1.0)
    k = k * (lines[:, None] if axis == 0 else lines[None, :])
    return np.abs(np.fft.ifft2(k)).astype(np.float32)


def _spiked(image: np.ndarray) -> np.ndarray:
    k = np.fft.fft2(image)
    k[20, 31] += 0.2 * image.mean() * image.size
    return np.abs(np.fft.ifft2(k)).astype(np.float32)


def _uint16_head(size: int, seed: int) -> np.ndarray:
    """A 12-bit head-like slice as ``bench/inference.py`` builds them (Rician noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    r = (yy / 0.40) ** 2 + (xx / 0.32) ** 2
    img = np.where(r < 1, 0.9, 0.0) - np.where(r < 0.8, 0.4, 0.0)
    img += 0.1 * np.sin(40 * yy) * (r < 0.8)
    noise = rng.normal(0, 0.03, (2, size, size))
    return np.clip(np.hypot(img + noise[0], noise[1]) * 3000, 0, 4095).astype(np.uint16)


def reference_slices() -> dict[str, np.ndarray]:
    """The pinned slices, name -> (H, W) array (built afresh on every call)."""
    clean = _textured(128, 0.01, 0)
    rng = np.random.default_rng(7)
    specks = _textured(128, 0.005, 1)
    specks[5:8, 5:8] = 1.0  # small bright components away from the head
    specks[120:122, 60:62] = 0.8
    non_finite = _textured(96, 0.02, 2)
    non_finite[10, 10], non_finite[20, 30], non_finite[50, 50] = np.nan, np.inf, -np.inf
    wide = np.pad(_textured(160, 0.02, 3), ((0, 0), (40, 0)))[:, :200]
    return {
        "clean_128": clean,
        "noisy_128": _textured(128, 0.05, 4),
        "masked_128": make_phantom(128),
        "ghost_rows_128": _kspace_scaled(clean, 0, 2, 0.7),
        "ghost_cols_128": _kspace_scaled(clean, 1, 2, 0.7),
        "line_jumps_128": _kspace_scaled(clean, 0, 4, 0.6),
        "spike_128": _spiked(clean),
        "bias_128": (clean * np.linspace(0.6, 1.4, 128)[None, :]).astype(np.float32),
        "uint16_256": _uint16_head(256, 5),
        "textured_256": _textured(256, 0.02, 6),
        "phantom_96": phantom(96, 8),
        "non_square_160x200": wide,
        "odd_97x131": _textured(131, 0.02, 9)[17:114, :],
        "min_side_16": np.abs(rng.standard_normal((16, 16)) + make_phantom(16)),
        "small_24x40": _textured(40, 0.02, 10)[8:32, :],
        "signed_64": (_textured(64, 0.02, 11) - 0.3).astype(np.float64),
        "specks_128": specks,
        "non_finite_96": non_finite,
        "flat_64": np.ones((64, 64), np.float32),
    }


def fingerprint(image: np.ndarray) -> float:
    """A float that moves when the slice does (finite pixels only)."""
    x = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    weights = np.arange(x.size, dtype=np.float64).reshape(x.shape) % 97 + 1
    return float((x * weights).sum())


def main() -> None:
    slices = reference_slices()
    panels = {
        name: {"fingerprint": fingerprint(image), "iqms": compute_iqms(image)}
        for name, image in slices.items()
    }
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"panel_version": PANEL_VERSION, "slices": panels}, indent=1)
    REFERENCE.write_text(text + "\n")
    print(f"wrote {len(panels)} panels of panel version {PANEL_VERSION} to {REFERENCE}")


if __name__ == "__main__":
    main()
