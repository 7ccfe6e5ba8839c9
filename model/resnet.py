"""AMAResNet: ResNet-18 with Squeeze-and-Excitation blocks and pyramid fusion of layer1..layer4.

The network classifies one image patch as artifact-free (class 0) or artifact-affected (class 1);
:mod:`model.partition` cuts slices into patches and aggregates the patch probabilities.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016
    (https://arxiv.org/abs/1512.03385) -- the ResNet-18 backbone.
    Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018 -- :mod:`model.se`.
    Lin et al., "Feature Pyramid Networks", CVPR 2017 -- :mod:`model.pyramid`.

The four registered variants are the four columns of the paper's ablation: ``resnet18``,
``resnet18_se``, ``resnet18_pyramid`` and ``amaresnet18`` (SE + pyramid).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .pyramid import PyramidFusion
from .registry import register_model
from .se import SqueezeExcitation

#: Options every builder accepts besides in_channels / num_classes; anything else is a ValueError.
CONFIG_KEYS = frozenset({"se_reduction", "pyramid_width", "dropout", "zero_init_residual"})


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding; no bias because a norm layer follows."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, used to project the identity when a block changes shape."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet BasicBlock, optionally with a Squeeze-and-Excitation gate.

    With ``se_reduction`` set, the gate rescales the residual branch *before* the identity is
    added (the SE-ResNet placement): the identity path stays an identity, so the gate can only
    re-weight what the block adds.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        se_reduction: int | None = None,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.se: nn.Module = (
            SqueezeExcitation(planes, se_reduction) if se_reduction is not None else nn.Identity()
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class SEBasicBlock(BasicBlock):
    """BasicBlock whose residual branch always carries an SE gate (reduction 16 by default)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        se_reduction: int | None = 16,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, se_reduction or 16, norm_layer)


class AMAResNet(nn.Module):
    """ResNet-18 backbone, optional SE gates, optional pyramid fusion, linear classifier.

    Args:
        in_channels: image channels (1 for magnitude MR).
        num_classes: output logits (2: clean, artifact).
        se_reduction: SE bottleneck ratio; ``None`` builds plain BasicBlocks.
        pyramid_width: channels of each pyramid level; ``None`` classifies from layer4 alone
            (global average pool, as in plain ResNet-18).
        dropout: dropout probability before the classifier.
        zero_init_residual: zero the last BN of every block so each starts as an identity.
        norm_layer: normalisation layer class (BatchNorm2d by default).

    Input (B, in_channels, H, W) with H, W >= 32; output logits (B, num_classes).
    """

    layers = (2, 2, 2, 2)  # ResNet-18
    widths = (64, 128, 256, 512)

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 2,
        se_reduction: int | None = 16,
        pyramid_width: int | None = 64,
        dropout: float = 0.0,
        zero_init_residual: bool = False,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if se_reduction is not None and se_reduction < 1:
            raise ValueError(f"se_reduction must be >= 1 or None, got {se_reduction}")
        if pyramid_width is not None and pyramid_width < 1:
            raise ValueError(f"pyramid_width must be >= 1 or None, got {pyramid_width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
            norm_layer(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.layer1 = self._make_layer(64, self.layers[0], 1, se_reduction)
        self.layer2 = self._make_layer(128, self.layers[1], 2, se_reduction)
        self.layer3 = self._make_layer(256, self.layers[2], 2, se_reduction)
        self.layer4 = self._make_layer(512, self.layers[3], 2, se_reduction)
        self.pyramid = (
            PyramidFusion(self.widths, pyramid_width, norm_layer) if pyramid_width else None
        )
        features = self.pyramid.out_features if self.pyramid is not None else self.widths[-1]
        self.num_features = features
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(
        self, planes: int, blocks: int, stride: int, se_reduction: int | None
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes, stride), self._norm_layer(planes)
            )
        block = BasicBlock if se_reduction is None else SEBasicBlock
        layers = [block(self.inplanes, planes, stride, downsample, se_reduction, self._norm_layer)]
        self.inplanes = planes
        layers += [
            block(planes, planes, 1, None, se_reduction, self._norm_layer) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock) and isinstance(m.bn2, nn.BatchNorm2d):
                    nn.init.zeros_(m.bn2.weight)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 for a (B, C, H, W) input, finest first."""
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, num_features) descriptor the classifier sees."""
        levels = self.stages(x)
        if self.pyramid is not None:
            return self.pyramid(levels)
        return levels[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


def _build(*, se: bool, pyramid: bool, in_channels: int, num_classes: int, **cfg: Any) -> AMAResNet:
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; accepted: {sorted(CONFIG_KEYS)}")
    se_reduction = cfg.get("se_reduction", 16) if se else None
    pyramid_width = cfg.get("pyramid_width", 64) if pyramid else None
    return AMAResNet(
        in_channels=in_channels,
        num_classes=num_classes,
        se_reduction=se_reduction,
        pyramid_width=pyramid_width,
        dropout=float(cfg.get("dropout", 0.0)),
        zero_init_residual=bool(cfg.get("zero_init_residual", False)),
    )


@register_model("resnet18")
def resnet18(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> AMAResNet:
    """Plain ResNet-18 (He et al. 2016): the ablation's baseline column."""
    return _build(se=False, pyramid=False, in_channels=in_channels, num_classes=num_classes, **cfg)


@register_model("resnet18_se")
def resnet18_se(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> AMAResNet:
    """ResNet-18 with an SE gate in every BasicBlock (Hu et al. 2018)."""
    return _build(se=True, pyramid=False, in_channels=in_channels, num_classes=num_classes, **cfg)


@register_model("resnet18_pyramid")
def resnet18_pyramid(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> AMAResNet:
    """ResNet-18 whose classifier reads the pyramid fusion of layer1..layer4."""
    return _build(se=False, pyramid=True, in_channels=in_channels, num_classes=num_classes, **cfg)


@register_model("amaresnet18")
def amaresnet18(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> AMAResNet:
    """AMAResNet-18: SE blocks + pyramid fusion, the paper's full model."""
    return _build(se=True, pyramid=True, in_channels=in_channels, num_classes=num_classes, **cfg)
