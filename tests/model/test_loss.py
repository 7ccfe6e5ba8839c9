from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model import JointLoss, soft_dice_loss


def test_joint_loss_matches_a_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([0, 1, 1])
    p1 = [1 / (1 + torch.e**2), 1 / (1 + torch.e**-1), 0.5]  # softmax positive-class probs
    ce = -(torch.log(torch.tensor([1 - p1[0], p1[1], p1[2]]))).mean()
    inter = p1[1] + p1[2]
    dice = (2 * inter + 1e-5) / (sum(p1) + 2 + 1e-5)
    expected = 0.7 * ce + 0.3 * (1 - dice)
    assert JointLoss()(logits, target).item() == pytest.approx(float(expected), rel=1e-5)


def test_dice_loss_is_zero_for_a_perfect_prediction() -> None:
    target = torch.tensor([0, 1, 1, 0, 1])
    assert soft_dice_loss(target.float(), target).item() == pytest.approx(0.0, abs=1e-6)
    # Confident logits approach the same limit through the joint loss's Dice term.
    logits = torch.stack([(1 - target) * 30.0, target * 30.0], dim=1).float()
    loss = JointLoss(alpha=0.0, beta=1.0)
    assert loss(logits, target).item() == pytest.approx(0.0, abs=1e-5)


def test_dice_loss_is_one_for_a_fully_wrong_prediction() -> None:
    target = torch.tensor([0, 1, 1, 0])
    assert soft_dice_loss((1 - target).float(), target).item() == pytest.approx(1.0, abs=1e-5)


def test_alpha_one_beta_zero_is_plain_cross_entropy() -> None:
    logits, target = torch.randn(16, 2), torch.randint(0, 2, (16,))
    assert torch.allclose(JointLoss(1.0, 0.0)(logits, target), F.cross_entropy(logits, target))


def test_an_all_negative_batch_stays_finite_and_differentiable() -> None:
    logits = torch.randn(8, 2, requires_grad=True)
    loss = JointLoss()(logits, torch.zeros(8, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None and torch.isfinite(logits.grad).all()


def test_last_terms_records_both_components() -> None:
    loss_fn = JointLoss()
    loss = loss_fn(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))
    terms = loss_fn.last_terms
    assert loss.item() == pytest.approx(0.7 * terms["ce"] + 0.3 * terms["dice"], rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": -0.1}, "alpha"),
        ({"beta": -1}, "beta"),
        ({"eps": 0}, "eps"),
        ({"alpha": 0, "beta": 0}, "alpha \\+ beta"),
    ],
)
def test_bad_weights_raise_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        JointLoss(**kwargs)


def test_wrong_logit_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="\\(N, 2\\)"):
        JointLoss()(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
