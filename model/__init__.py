"""amaqc model core: AMAResNet, patch partition + aggregation, joint loss, checkpoints, Predictor,
and the torch-free parts of the detector: the IQM panel (``model.iqm``) and the fused detector
(``model.fusion``).

Pure PyTorch: imports neither ``app`` nor ``training`` and reads no environment variables. The
public names below load on first use (PEP 562), so ``import model.iqm`` (the API explaining a
verdict) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import (
        CheckpointError,
        CheckpointMeta,
        load_checkpoint,
        read_metadata,
        save_checkpoint,
    )
    from .loss import JointLoss, soft_dice_loss
    from .partition import AGGREGATIONS, PatchGrid, aggregate, make_grid
    from .predictor import Predictor, SlicePrediction, default_device
    from .preprocess import Normalization, normalize_slice
    from .registry import build_model, list_models, register_model
    from .resnet import AMAResNet, BasicBlock, SEBasicBlock
    from .se import SqueezeExcitation

#: public name -> the submodule that defines it
_WHERE = {
    "CheckpointError": "checkpoint",
    "CheckpointMeta": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_metadata": "checkpoint",
    "save_checkpoint": "checkpoint",
    "JointLoss": "loss",
    "soft_dice_loss": "loss",
    "AGGREGATIONS": "partition",
    "PatchGrid": "partition",
    "aggregate": "partition",
    "make_grid": "partition",
    "Predictor": "predictor",
    "SlicePrediction": "predictor",
    "default_device": "predictor",
    "Normalization": "preprocess",
    "normalize_slice": "preprocess",
    "build_model": "registry",
    "list_models": "registry",
    "register_model": "registry",
    "AMAResNet": "resnet",
    "BasicBlock": "resnet",
    "SEBasicBlock": "resnet",
    "SqueezeExcitation": "se",
}

__all__ = [
    "AGGREGATIONS",
    "AMAResNet",
    "BasicBlock",
    "CheckpointError",
    "CheckpointMeta",
    "JointLoss",
    "Normalization",
    "PatchGrid",
    "Predictor",
    "SEBasicBlock",
    "SlicePrediction",
    "SqueezeExcitation",
    "aggregate",
    "build_model",
    "default_device",
    "list_models",
    "load_checkpoint",
    "make_grid",
    "normalize_slice",
    "read_metadata",
    "register_model",
    "save_checkpoint",
    "soft_dice_loss",
]
# ``partition`` (the function) is not in this face: a lazy package cannot export a name that is
# also one of its submodules; use ``model.partition.partition``.


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
