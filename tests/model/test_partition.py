from __future__ import annotations

import pytest
import torch

from model.partition import aggregate, make_grid, partition


def test_partition_then_reassemble_returns_the_image() -> None:
    images = torch.arange(2 * 1 * 8 * 12, dtype=torch.float32).reshape(2, 1, 8, 12)
    patches, grid = partition(images, patch=4)
    assert patches.shape == (2 * 6, 1, 4, 4)
    assert (grid.rows, grid.cols) == (2, 3)
    for b in range(2):
        for i in range(grid.num_patches):
            top, left, bottom, right = grid.box(i)
            expected = images[b, :, top:bottom, left:right]
            assert torch.equal(patches[b * grid.num_patches + i], expected)


def test_overlapping_stride_counts_patches() -> None:
    patches, grid = partition(torch.zeros(1, 1, 256, 256), patch=128, stride=64)
    assert (grid.rows, grid.cols) == (3, 3)
    assert patches.shape == (9, 1, 128, 128)


def test_image_smaller_than_a_patch_is_padded_not_rejected() -> None:
    patches, grid = partition(torch.ones(1, 1, 20, 30), patch=64)
    assert patches.shape == (1, 1, 64, 64)
    assert grid.padded_height == grid.padded_width == 64
    assert patches[0, 0, :20, :30].eq(1).all() and patches[0, 0, 20:].eq(0).all()


def test_size_not_a_multiple_of_stride_is_padded_to_cover_every_pixel() -> None:
    grid = make_grid(100, 70, patch=32, stride=24)
    assert grid.padded_height >= 100 and grid.padded_width >= 70
    assert (grid.padded_height - 32) % 24 == 0 and (grid.padded_width - 32) % 24 == 0
    patches, _ = partition(torch.ones(1, 1, 100, 70), patch=32, stride=24)
    assert patches.shape[0] == grid.num_patches


@pytest.mark.parametrize(("patch", "stride"), [(0, None), (16, 0), (16, 17)])
def test_bad_patch_geometry_raises_naming_it(patch: int, stride: int | None) -> None:
    with pytest.raises(ValueError, match="patch|stride"):
        make_grid(64, 64, patch, stride)


def test_partition_rejects_non_4d_input() -> None:
    with pytest.raises(ValueError, match="B, C, H, W"):
        partition(torch.zeros(8, 8), patch=4)


def test_aggregations_on_a_known_patch_map() -> None:
    grid = make_grid(8, 8, patch=4)  # 2 x 2 patches
    probs = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.0, 0.0, 0.0, 0.4])
    mean, maps = aggregate(probs, grid, "mean")
    assert torch.allclose(mean, torch.tensor([0.375, 0.1]))
    assert maps.shape == (2, 2, 2) and maps[0, 1, 1] == pytest.approx(0.9)
    maxed, _ = aggregate(probs, grid, "max")
    assert torch.allclose(maxed, torch.tensor([0.9, 0.4]))
    top2, _ = aggregate(probs, grid, "topk_mean", k=2)
    assert torch.allclose(top2, torch.tensor([0.6, 0.2]))
    top_default, _ = aggregate(probs, grid, "topk_mean")  # ceil(4 / 4) = 1 -> max
    assert torch.allclose(top_default, maxed)


def test_aggregate_rejects_unknown_rule_and_wrong_count() -> None:
    grid = make_grid(8, 8, patch=4)
    with pytest.raises(ValueError, match="median"):
        aggregate(torch.zeros(4), grid, "median")
    with pytest.raises(ValueError, match="multiple of 4"):
        aggregate(torch.zeros(6), grid, "mean")
