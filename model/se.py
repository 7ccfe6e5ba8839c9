"""Squeeze-and-Excitation channel gate.

Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (https://arxiv.org/abs/1709.01507).
A global average pool "squeezes" each channel to one number; a two-layer bottleneck MLP
"excites" them into per-channel gates in (0, 1) that rescale the feature map. AMAResNet puts
one gate on the residual branch of every BasicBlock, before the identity is added.
"""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """Channel gate ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` on a (B, C, H, W) tensor.

    Args:
        channels: number of input (and output) channels C.
        reduction: bottleneck ratio; the hidden width is ``max(channels // reduction, min_hidden)``.
        min_hidden: lower bound on the hidden width so narrow layers keep a useful gate.
    """

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"SqueezeExcitation channels must be >= 1, got {channels}")
        if reduction < 1:
            raise ValueError(f"SqueezeExcitation reduction must be >= 1, got {reduction}")
        hidden = max(channels // reduction, min_hidden)
        # 1x1 convolutions on the pooled (B, C, 1, 1) tensor are the fully connected layers of
        # the paper without a reshape, and keep channels_last tensors in their layout.
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = self.fc2(self.relu(self.fc1(gate)))
        return x * torch.sigmoid(gate)
