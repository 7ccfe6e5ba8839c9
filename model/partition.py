"""Partition images into fixed-size patches and aggregate patch predictions back per image.

AMAResNet scores patches, not whole slices: a (B, C, H, W) batch becomes (B * P, C, p, p), the
network gives one artifact probability per patch, and :func:`aggregate` turns the P patch
probabilities of each image into an image probability plus a (rows, cols) patch map (the heatmap
radiographers see). Images smaller than a patch, or whose size is not a multiple of the stride,
are zero-padded at the bottom/right instead of being rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Aggregation = Literal["mean", "max", "topk_mean"]
AGGREGATIONS: tuple[str, ...] = ("mean", "max", "topk_mean")


@dataclass(frozen=True)
class PatchGrid:
    """Bookkeeping to map patch index <-> image position.

    ``height``/``width`` are the input size, ``padded_height``/``padded_width`` the size after
    padding; patch (r, c) covers rows ``r*stride : r*stride+patch`` of the padded image.
    """

    height: int
    width: int
    patch: int
    stride: int
    rows: int
    cols: int

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols

    @property
    def padded_height(self) -> int:
        return (self.rows - 1) * self.stride + self.patch

    @property
    def padded_width(self) -> int:
        return (self.cols - 1) * self.stride + self.patch

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) in padded-image pixels of patch ``index`` (row-major)."""
        if not 0 <= index < self.num_patches:
            raise IndexError(f"patch index {index} out of range for {self.num_patches} patches")
        r, c = divmod(index, self.cols)
        top, left = r * self.stride, c * self.stride
        return top, left, top + self.patch, left + self.patch


def make_grid(height: int, width: int, patch: int, stride: int | None = None) -> PatchGrid:
    """The patch grid for an image of ``height`` x ``width`` pixels."""
    stride = patch if stride is None else stride
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be in [1, patch={patch}], got {stride}")
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")

    def count(size: int) -> int:
        return max(1, math.ceil((size - patch) / stride) + 1)

    return PatchGrid(height, width, patch, stride, count(height), count(width))


def partition(
    images: torch.Tensor, patch: int, stride: int | None = None, pad_value: float = 0.0
) -> tuple[torch.Tensor, PatchGrid]:
    """Cut a (B, C, H, W) batch into (B * P, C, patch, patch) patches, row-major per image.

    Returns the patches and the :class:`PatchGrid` needed to put predictions back in place.
    """
    if images.ndim != 4:
        raise ValueError(
            f"partition expects a (B, C, H, W) tensor, got shape {tuple(images.shape)}"
        )
    b, c, h, w = images.shape
    grid = make_grid(h, w, patch, stride)
    pad_h, pad_w = grid.padded_height - h, grid.padded_width - w
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=pad_value)
    tiles = images.unfold(2, patch, grid.stride).unfold(3, patch, grid.stride)
    # (B, C, rows, cols, p, p) -> (B, rows, cols, C, p, p) -> (B * P, C, p, p)
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(b * grid.num_patches, c, patch, patch)
    return tiles.contiguous(), grid


def aggregate(
    patch_probs: torch.Tensor,
    grid: PatchGrid,
    how: str = "mean",
    k: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Aggregate patch probabilities into image probabilities.

    Args:
        patch_probs: (B * P,) or (B, P) artifact probabilities, in the order of :func:`partition`.
        grid: the grid :func:`partition` returned.
        how: ``mean``, ``max`` or ``topk_mean`` (mean of the ``k`` highest patches: an artifact
            confined to part of the slice is not averaged away by clean patches).
        k: patches for ``topk_mean``; default ``ceil(P / 4)``.

    Returns:
        (B,) image probabilities and the (B, rows, cols) patch map.
    """
    p = grid.num_patches
    if patch_probs.numel() % p:
        raise ValueError(
            f"{patch_probs.numel()} patch probabilities is not a multiple of {p} patches per image"
        )
    per_image = patch_probs.reshape(-1, p)
    if how == "mean":
        probs = per_image.mean(dim=1)
    elif how == "max":
        probs = per_image.amax(dim=1)
    elif how == "topk_mean":
        k = max(1, math.ceil(p / 4)) if k is None else k
        if k < 1:
            raise ValueError(f"topk_mean needs k >= 1, got {k}")
        probs = per_image.topk(min(k, p), dim=1).values.mean(dim=1)
    else:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    return probs, per_image.reshape(-1, grid.rows, grid.cols)
