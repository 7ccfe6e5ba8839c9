"""amaqc model core: AMAResNet, patch partition + aggregation, joint loss, checkpoints, Predictor.

Pure PyTorch: imports neither ``app`` nor ``training`` and reads no environment variables.
"""

from . import baselines as _baselines  # noqa: F401  (registers the comparison baselines)
from . import resnet as _resnet  # noqa: F401  (registers the four variants)
from .checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from .loss import JointLoss, soft_dice_loss
from .partition import AGGREGATIONS, PatchGrid, aggregate, make_grid, partition
from .predictor import Predictor, SlicePrediction, default_device
from .preprocess import Normalization, normalize_slice
from .registry import build_model, list_models, register_model
from .resnet import AMAResNet, BasicBlock, SEBasicBlock
from .se import SqueezeExcitation

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
    "partition",
    "read_metadata",
    "register_model",
    "save_checkpoint",
    "soft_dice_loss",
]
