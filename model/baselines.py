"""The baselines of the paper's comparison (its Figures 3 and 4), adapted to the project's contract.

Every network here maps (B, in_channels, H, W) patches with H, W >= 32 to (B, num_classes) logits,
exactly like :class:`model.resnet.AMAResNet`, so the same training loop, checkpoint format and
:class:`model.Predictor` run them. All are built for 1-channel magnitude MR and trained from
scratch: nothing here loads pretrained weights.

Adaptations, and why:

* every classifier reads a global average pool of the last feature map, not a flattened fixed-size
  map, so any patch size >= 32 works (the Predictor cuts patches of the checkpoint's size);
* VGG uses batch normalisation after each convolution (torchvision's ``vgg16_bn`` layout):
  trained from scratch with Adam at lr 1e-3, plain VGG-16/19 does not reliably leave chance level,
  and ImageNet weights are not an option for 1-channel input without a download. Its two
  4096-wide fully connected layers (about 120 M of VGG-16's 138 M parameters, sized for 7x7 maps
  of 224 px images) become one 512-wide hidden layer;
* DenseNet-121 is torchvision's, with a 1-channel stem convolution.

References:
    Meding et al., "Automatic detection of motion artifacts in MR images using CNNs",
    ICASSP 2017 -- the plain 2-D CNN (its layer counts are not reproduced: a small VGG-like stack).
    Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    ICLR 2015 (https://arxiv.org/abs/1409.1556) -- VGG-16 (config D) and VGG-19 (config E).
    Huang et al., "Densely Connected Convolutional Networks", CVPR 2017
    (https://arxiv.org/abs/1608.06993) -- DenseNet-121.
    Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015 (https://arxiv.org/abs/1505.04597) -- the contracting path as a classifier.
    SE-ResNet-18 is :func:`model.resnet.resnet18_se`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .registry import register_model

#: Names of the baselines registered here, in the order of the paper's comparison.
BASELINES = ("cnn2d", "vgg16", "vgg19", "densenet121", "unet_encoder")

# VGG configurations D (16 weight layers) and E (19): conv widths, "M" = 2x2 max pool.
_VGG_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", *[256] * 3, "M", *[512] * 3, "M", *[512] * 3, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}


def _check_options(name: str, cfg: dict[str, Any], accepted: Iterable[str]) -> None:
    unknown = set(cfg) - set(accepted)
    if unknown:
        raise ValueError(
            f"{name}: unknown option(s) {sorted(unknown)}; accepted: {sorted(accepted)}"
        )


def _check_io(in_channels: int, num_classes: int, dropout: float) -> None:
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


def _init(module: nn.Module) -> None:
    """He initialisation for convolutions (ReLU nets trained from scratch), unit BN."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class PooledClassifier(nn.Module):
    """A convolutional ``features`` stack, global average pooling and an MLP head.

    Args:
        features: maps (B, C, H, W) to (B, num_features, h, w).
        num_features: channels of the last feature map.
        num_classes: output logits.
        hidden: width of the hidden layer of the head; 0 for a single linear layer.
        dropout: dropout probability before each linear layer.
    """

    def __init__(
        self,
        features: nn.Module,
        num_features: int,
        num_classes: int,
        *,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.num_features = num_features
        head: list[nn.Module] = []
        width = num_features
        if hidden:
            head += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        head += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.classifier = nn.Sequential(*head)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _stages(in_channels: int, widths: Sequence[int], convs_per_stage: int) -> nn.Sequential:
    """Stages of ``convs_per_stage`` conv-BN-ReLU layers, each followed by a 2x2 max pool."""
    layers: list[nn.Module] = []
    prev = in_channels
    for width in widths:
        for _ in range(convs_per_stage):
            layers += _conv_bn_relu(prev, width)
            prev = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@register_model("cnn2d")
def cnn2d(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> PooledClassifier:
    """Plain 2-D CNN in the style of Meding et al. (2017): no residuals, no attention.

    Four stages of conv3x3-BN-ReLU + 2x2 max pool (``width`` x 1, 2, 4, 8 channels, ``width``
    = 32 by default), global average pooling, a 128-wide hidden layer (dropout 0.5).
    """
    _check_options("cnn2d", cfg, {"width", "dropout"})
    width, dropout = int(cfg.get("width", 32)), float(cfg.get("dropout", 0.5))
    _check_io(in_channels, num_classes, dropout)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    widths = [width, 2 * width, 4 * width, 8 * width]
    features = _stages(in_channels, widths, convs_per_stage=1)
    return PooledClassifier(features, widths[-1], num_classes, hidden=128, dropout=dropout)


def _vgg(name: str, in_channels: int, num_classes: int, cfg: dict[str, Any]) -> PooledClassifier:
    _check_options(name, cfg, {"dropout"})
    dropout = float(cfg.get("dropout", 0.5))
    _check_io(in_channels, num_classes, dropout)
    layers: list[nn.Module] = []
    prev = in_channels
    for item in _VGG_CFGS[name]:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += _conv_bn_relu(prev, int(item))
            prev = int(item)
    return PooledClassifier(nn.Sequential(*layers), prev, num_classes, hidden=512, dropout=dropout)


@register_model("vgg16")
def vgg16(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> PooledClassifier:
    """VGG-16 with batch norm (Simonyan & Zisserman 2015, config D), global-pool head."""
    return _vgg("vgg16", in_channels, num_classes, cfg)


@register_model("vgg19")
def vgg19(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> PooledClassifier:
    """VGG-19 with batch norm (Simonyan & Zisserman 2015, config E), global-pool head."""
    return _vgg("vgg19", in_channels, num_classes, cfg)


@register_model("densenet121")
def densenet121(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> nn.Module:
    """DenseNet-121 (Huang et al. 2017): torchvision's network, random init, 1-channel stem."""
    _check_options("densenet121", cfg, {"dropout"})
    dropout = float(cfg.get("dropout", 0.0))
    _check_io(in_channels, num_classes, dropout)
    # Imported here: torchvision costs ~1 s to import and only this builder needs it.
    from torchvision.models import densenet121 as tv_densenet121

    net = tv_densenet121(weights=None, num_classes=num_classes, drop_rate=dropout)
    net.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.features.conv0.weight)
    return net


class _DoubleConv(nn.Sequential):
    """U-Net's unit: two conv3x3-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(*_conv_bn_relu(in_ch, out_ch), *_conv_bn_relu(out_ch, out_ch))


@register_model("unet_encoder")
def unet_encoder(*, in_channels: int = 1, num_classes: int = 2, **cfg: Any) -> PooledClassifier:
    """U-Net's contracting path (Ronneberger et al. 2015) as a classifier.

    Five double-conv levels (``width`` x 1, 2, 4, 8, 16 channels, ``width`` = 64 by default),
    2x2 max pool between them, the bottleneck's features averaged and classified linearly; the
    expanding path is dropped because the task is a label per patch, not a mask.
    """
    _check_options("unet_encoder", cfg, {"width", "dropout"})
    width, dropout = int(cfg.get("width", 64)), float(cfg.get("dropout", 0.0))
    _check_io(in_channels, num_classes, dropout)
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    widths = [width * 2**i for i in range(5)]
    layers: list[nn.Module] = [_DoubleConv(in_channels, widths[0])]
    for prev, cur in itertools.pairwise(widths):
        layers += [nn.MaxPool2d(2), _DoubleConv(prev, cur)]
    return PooledClassifier(nn.Sequential(*layers), widths[-1], num_classes, dropout=dropout)
