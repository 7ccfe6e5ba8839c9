"""Fitting a checkpoint: the on-the-fly patch stream (:mod:`.patches`), the training loop with
validation, early stopping and resumable state (:mod:`.train`, :mod:`.state`), stochastic weight
averaging (:mod:`.average`), and the fused detector's logistic regression over AMAResNet's output
and the IQM panel (:mod:`.fusion`). The loop itself is :func:`training.fit.train.train`.
"""

from .average import average_checkpoints
from .fusion import attach_fusion, fit_fusion, pooled_threshold, training_slices
from .patches import TrainPatches
from .train import LR_FLOOR, TrainConfig, config_from_json, with_both_classes

__all__ = [
    "LR_FLOOR",
    "TrainConfig",
    "TrainPatches",
    "attach_fusion",
    "average_checkpoints",
    "config_from_json",
    "fit_fusion",
    "pooled_threshold",
    "training_slices",
    "with_both_classes",
]
