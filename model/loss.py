"""The paper's weighted joint loss: ``alpha * CrossEntropy + beta * soft Dice loss``.

The Dice term is computed on the positive-class (artifact) probability over the whole batch,
``Dice = (2 * sum(p * y) + eps) / (sum(p) + sum(y) + eps)``, so it rewards overlap between the
predicted and true artifact sets and counteracts class imbalance; cross-entropy keeps the
per-sample probabilities calibrated. The paper's best weights are alpha = 0.7, beta = 0.3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``1 - Dice`` between (N,) probabilities and (N,) binary targets, over the batch."""
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
    target = target.to(prob.dtype)
    intersection = (prob * target).sum()
    dice = (2.0 * intersection + eps) / (prob.sum() + target.sum() + eps)
    return 1.0 - dice


class JointLoss(nn.Module):
    """``alpha * CE(logits, target) + beta * soft_dice_loss(softmax(logits)[:, 1], target)``.

    Args:
        alpha: weight of the cross-entropy term (>= 0).
        beta: weight of the Dice term (>= 0); alpha + beta must be > 0.
        eps: smoothing of the Dice ratio (> 0); keeps an all-negative batch finite.

    ``forward(logits (N, 2), target (N,) long) -> scalar``. The last call's two terms are kept in
    ``last_terms`` for logging.
    """

    def __init__(self, alpha: float = 0.7, beta: float = 0.3, eps: float = 1e-5) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if alpha + beta <= 0:
            raise ValueError(f"alpha + beta must be > 0, got alpha={alpha}, beta={beta}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.last_terms: dict[str, float] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != 2:
            raise ValueError(f"JointLoss expects (N, 2) logits, got shape {tuple(logits.shape)}")
        ce = F.cross_entropy(logits.float(), target)
        dice = soft_dice_loss(torch.softmax(logits.float(), dim=1)[:, 1], target, self.eps)
        self.last_terms = {"ce": float(ce.detach()), "dice": float(dice.detach())}
        return self.alpha * ce + self.beta * dice

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, eps={self.eps}"
