"""Feature-pyramid fusion of ResNet stages into one fixed-length descriptor.

Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017
(https://arxiv.org/abs/1612.03144): lateral 1x1 convolutions bring every stage to a common width,
a top-down pass upsamples the coarser level and adds it to the finer one, and a 3x3 convolution
smooths each sum. AMAResNet classifies rather than detects, so each smoothed level is globally
average-pooled and the pooled vectors are concatenated: the classifier sees fine texture from
layer1 (where ringing, spikes and ghost edges live) next to the semantics of layer4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PyramidFusion(nn.Module):
    """Fuse feature maps ``[c1, c2, c3, c4]`` (finest first) into a (B, len(in_channels) * width)
    vector.

    Args:
        in_channels: channels of each input level, finest first (64, 128, 256, 512 for ResNet-18).
        width: channels of every pyramid level after the lateral convolution.
        norm_layer: normalisation after each smoothing convolution.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        width: int = 64,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(
                f"PyramidFusion needs at least 2 levels, got in_channels={in_channels}"
            )
        if width < 1:
            raise ValueError(f"PyramidFusion width must be >= 1, got {width}")
        self.width = width
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)
        # The smoothing conv removes the aliasing of nearest-neighbour upsampling; BN + ReLU keep
        # the pooled statistics of the four levels on one scale for the linear head.
        self.smooth = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
                norm_layer(width),
                nn.ReLU(inplace=True),
            )
            for _ in in_channels
        )

    @property
    def out_features(self) -> int:
        return self.width * len(self.lateral)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.lateral):
            raise ValueError(
                f"PyramidFusion expects {len(self.lateral)} feature maps, got {len(features)}"
            )
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        # Top-down: start from the coarsest level and add it, upsampled, into each finer one.
        merged = [laterals[-1]]
        for lat in reversed(laterals[:-1]):
            top = F.interpolate(merged[0], size=lat.shape[-2:], mode="nearest")
            merged.insert(0, lat + top)
        pooled = [smooth(m).mean(dim=(2, 3)) for smooth, m in zip(self.smooth, merged, strict=True)]
        return torch.cat(pooled, dim=1)
