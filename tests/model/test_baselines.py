from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model import (
    CheckpointError,
    CheckpointMeta,
    Normalization,
    Predictor,
    build_model,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from model.baselines import BASELINES

SMALL = {"cnn2d": {"width": 8}, "unet_encoder": {"width": 8}}


def test_every_baseline_is_registered() -> None:
    assert set(BASELINES) <= set(list_models())


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("side", [32, 64])
def test_baseline_maps_one_channel_patches_to_two_logits(name: str, side: int) -> None:
    model = build_model(name, **SMALL.get(name, {})).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    with torch.no_grad():
        out = model(torch.randn(2, 1, side, side))
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", BASELINES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    """Trained from scratch, so no frozen or dead part: one backward pass reaches every
    parameter with a finite, non-zero gradient."""
    torch.manual_seed(0)
    model = build_model(name, **SMALL.get(name, {}))
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 0, 1])
    nn.functional.cross_entropy(model(x), y).backward()
    dead = [
        n
        for n, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0
    ]
    assert not dead


def test_the_plain_cnn_learns_a_trivial_task() -> None:
    """Bright vs dark patches: a few Adam steps drive the loss down."""
    torch.manual_seed(0)
    model = build_model("cnn2d", width=8, dropout=0.0)
    x = torch.cat([torch.rand(8, 1, 32, 32) * 0.2, 0.8 + torch.rand(8, 1, 32, 32) * 0.2])
    y = torch.tensor([0] * 8 + [1] * 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_checkpoint_round_trip_through_the_predictor(name: str, tmp_path: Path) -> None:
    cfg = SMALL.get(name, {})
    model = build_model(name, **cfg).eval()
    meta = CheckpointMeta(
        arch=name,
        arch_config=cfg,
        patch_size=32,
        patch_stride=32,
        normalization=Normalization(size=64).to_dict(),
    )
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, meta)
    loaded, _ = load_checkpoint(path)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    (pred,) = Predictor(path, device="cpu").predict([np.random.rand(70, 50).astype(np.float32)])
    assert 0.0 <= pred.probability <= 1.0
    assert pred.patch_probs.ndim == 2


def test_a_checkpoint_of_another_baseline_is_refused(tmp_path: Path) -> None:
    meta = CheckpointMeta(arch="vgg19", patch_size=32, patch_stride=32)
    path = save_checkpoint(tmp_path / "x.safetensors", build_model("vgg16"), meta)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", BASELINES)
def test_unknown_option_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}.*widht"):
        build_model(name, widht=3)


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("cnn2d", {"width": 0}, "width"),
        ("unet_encoder", {"width": 0}, "width"),
        ("vgg16", {"dropout": 1.0}, "dropout"),
        ("densenet121", {"num_classes": 1}, "num_classes"),
        ("vgg19", {"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_values_are_refused_naming_the_field(name: str, kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build_model(name, **kwargs)
