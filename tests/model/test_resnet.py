from __future__ import annotations

import pytest
import torch
from torch import nn

from model import AMAResNet, SEBasicBlock, SqueezeExcitation, build_model, list_models

VARIANTS = ["resnet18", "resnet18_se", "resnet18_pyramid", "amaresnet18"]


def test_registry_lists_the_four_ablation_variants() -> None:
    assert set(VARIANTS) <= set(list_models())


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_maps_one_channel_patches_to_two_logits(name: str) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 64, 64))
    assert out.shape == (3, 2)
    assert torch.isfinite(out).all()


def test_variants_differ_in_the_modules_they_contain() -> None:
    def has(model: nn.Module, kind: type) -> bool:
        return any(isinstance(m, kind) for m in model.modules())

    plain, se, pyr, full = (build_model(n) for n in VARIANTS)
    assert not has(plain, SEBasicBlock) and plain.pyramid is None
    assert has(se, SEBasicBlock) and se.pyramid is None
    assert not has(pyr, SEBasicBlock) and pyr.pyramid is not None
    assert has(full, SEBasicBlock) and full.pyramid is not None


def test_plain_resnet18_matches_torchvision_parameter_count() -> None:
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.resnet18(num_classes=2)
    ours = build_model("resnet18", in_channels=3)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(ref)


def test_unknown_model_name_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*amaresnet18"):
        build_model("resnet19")


def test_unknown_option_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="pyramid_widht"):
        build_model("amaresnet18", pyramid_widht=32)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"se_reduction": 0}, "se_reduction"),
    ],
)
def test_bad_option_values_raise_naming_the_option(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        build_model("amaresnet18", **kwargs)


def test_se_gate_scales_channels_into_zero_one() -> None:
    se = SqueezeExcitation(32, reduction=16)
    x = torch.rand(2, 32, 8, 8) + 0.1
    y = se(x)
    ratio = y / x
    # One gate value per (sample, channel), strictly between 0 and 1.
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all()


def test_se_block_gates_the_residual_branch_before_the_addition() -> None:
    block = SEBasicBlock(16, 16).eval()
    x = torch.randn(1, 16, 8, 8)
    # Force the gate shut: the block must then reduce to relu(identity).
    nn.init.zeros_(block.se.fc2.weight)
    nn.init.constant_(block.se.fc2.bias, -1e4)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(x), atol=1e-6)


def test_all_four_pyramid_levels_reach_the_output() -> None:
    model = build_model("amaresnet18")
    model(torch.randn(4, 1, 64, 64)).sum().backward()
    assert model.pyramid is not None
    for level, (lateral, smooth) in enumerate(
        zip(model.pyramid.lateral, model.pyramid.smooth, strict=True)
    ):
        assert lateral.weight.grad is not None and lateral.weight.grad.abs().sum() > 0, level
        assert smooth[0].weight.grad is not None and smooth[0].weight.grad.abs().sum() > 0, level


def test_layer1_gets_gradient_through_the_pyramid_path_alone() -> None:
    model = build_model("amaresnet18")
    assert model.pyramid is not None
    levels = model.stages(torch.randn(2, 1, 64, 64))
    # Detach layer2..4 so the only route from the loss back to layer1 is its own lateral conv.
    fused = model.pyramid([levels[0]] + [lv.detach() for lv in levels[1:]])
    model.fc(fused).sum().backward()
    grad = model.layer1[0].conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_pyramid_descriptor_has_fixed_length_for_any_input_size() -> None:
    model = build_model("amaresnet18", pyramid_width=32).eval()
    with torch.no_grad():
        a = model.features(torch.randn(1, 1, 64, 64))
        b = model.features(torch.randn(1, 1, 96, 160))
    assert a.shape == b.shape == (1, 4 * 32)


def test_amaresnet_trains_a_step_in_channels_last() -> None:
    model = AMAResNet().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(4, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([0, 1, 0, 1])
    before = nn.functional.cross_entropy(model(x), y)
    before.backward()
    opt.step()
    assert torch.isfinite(before)
