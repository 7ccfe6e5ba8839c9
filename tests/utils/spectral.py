"""A small fused checkpoint whose detector reads the spectral network, for the tests of
``model.spectral`` and ``model.spectral_runtime``."""

from __future__ import annotations

from pathlib import Path

import torch

from model import CheckpointMeta, build_model
from model.checkpoint import save_checkpoint
from model.fusion import FusionModel
from model.spectral import SpectralNet, ensemble, spectral_description

__all__ = ["seeded_net", "small_fusion", "small_meta", "spectral_checkpoint_file"]


def small_fusion() -> FusionModel:
    return FusionModel(
        features=("iqm_snr", "spectral_logit"),
        mean=(1.5, 0.0),
        scale=(0.5, 2.0),
        coef=(-0.4, 1.3),
        intercept=-0.1,
        threshold=0.55,
    )


def seeded_net(seed: int = 0) -> SpectralNet:
    torch.manual_seed(seed)
    net = SpectralNet()
    with torch.no_grad():  # BatchNorm running statistics that are not the defaults
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def small_meta(**overrides: object) -> CheckpointMeta:
    fields: dict = {
        "arch": "amaresnet18",
        "arch_config": {"pyramid_width": 16},
        "patch_size": 32,
        "patch_stride": 32,
        "threshold": 0.4,
    }
    fields.update(overrides)
    return CheckpointMeta(**fields)


def spectral_checkpoint_file(path: Path, seed: int = 0, members: int = 1) -> Path:
    """Save AMAResNet (pyramid width 16), :func:`seeded_net` (``seed``; with ``members`` > 1 an
    ensemble of seeds ``seed``, ``seed + 1``, ...) and :func:`small_fusion` to ``path``; the
    spectral description's info is ``{"seeds": [1]}``."""
    model = build_model("amaresnet18", pyramid_width=16).eval()
    net = ensemble([seeded_net(seed + i) for i in range(members)])
    description = spectral_description(net, {"seeds": [1]})
    meta = small_meta(fusion=small_fusion().to_dict(), spectral=description)
    return save_checkpoint(path, model, meta, spectral=net)
