"""Slices and patch heatmaps as PNG images (PIL + numpy, no torch)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(H, W) any range -> (H, W) uint8 with a 0.5..99.5 percentile window."""
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def slice_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_png(pixels: np.ndarray, patch_map: np.ndarray, *, alpha: float = 0.6) -> bytes:
    """The slice in grey with the (rows, cols) patch probabilities in red over it; each cell
    is stretched over the part of the slice its patches cover (nearest neighbour)."""
    buffer = io.BytesIO()
    Image.fromarray(heatmap_rgb(pixels, patch_map, alpha=alpha), mode="RGB").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def heatmap_rgb(pixels: np.ndarray, patch_map: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """:func:`heatmap_png`'s picture as an (H, W, 3) uint8 RGB array (the PACS secondary
    captures of ``app.pacs.capture`` show the same)."""
    grey = to_uint8(pixels).astype(np.float32)
    height, width = grey.shape
    probs = np.clip(np.asarray(patch_map, dtype=np.float32), 0, 1)
    if probs.ndim != 2 or probs.size == 0:
        raise ValueError(f"patch map must be a non-empty (rows, cols) array, got {probs.shape}")
    cell = Image.fromarray((probs * 255).astype(np.uint8), mode="L")
    heat = np.asarray(cell.resize((width, height), Image.Resampling.NEAREST), np.float32) / 255
    weight = alpha * heat
    rgb = np.stack(
        [grey * (1 - weight) + 255 * weight, grey * (1 - weight), grey * (1 - weight)], -1
    )
    return rgb.clip(0, 255).astype(np.uint8)
