"""How a checkpoint is scored: the paper's metrics and the threshold rule (:mod:`.metrics`),
scoring a labelled split with per-kind / per-severity / per-source breakdowns (:mod:`.scoring`),
one CSV line per slice for a folder of images (:mod:`.predict`), and choosing the threshold again
on a site's own labelled images (:mod:`.calibrate`). The training loop validates through this
package, so it sits below :mod:`training.fit`.
"""

from .metrics import (
    best_threshold,
    binary_metrics,
    paired_auc_difference,
    plot_confusion,
    plot_roc,
)
from .predict import predict_path
from .scoring import evaluate, predict_samples, summarise, target_mask

__all__ = [
    "best_threshold",
    "binary_metrics",
    "evaluate",
    "paired_auc_difference",
    "plot_confusion",
    "plot_roc",
    "predict_path",
    "predict_samples",
    "summarise",
    "target_mask",
]
