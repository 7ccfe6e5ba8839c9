"""The fixed validation set and the comparison behind auto-activation (training worker only:
imports torch through ``model`` and ``training``).

The set is ``AMAQC_VALIDATION_DIR`` (every labelled slice in it) when configured, else the
``val`` split of the job's data (split seed 0). A set of clean slices only gets a fixed,
seeded simulated-artifact twin of each slice. The candidate and the active version are scored
on the very same samples, each at its own threshold; the candidate *beats* the active version
when its (F1, ROC-AUC) pair is strictly greater, compared in that order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings

#: seed of the simulated artifact twins of a clean-only validation set
VALIDATION_SEED = 1


@dataclass
class ValidationSet:
    samples: list[Any]  # training.data.Sample
    labels: np.ndarray
    description: dict[str, Any]


def fixed_validation_set(settings: Settings, job_data: Path) -> ValidationSet:
    """The samples every version of this job is compared on, and what they are."""
    from training.data import describe, load_labelled_dataset, load_samples, load_split
    from training.fit import with_both_classes

    if settings.validation_dir is not None:
        root = Path(settings.validation_dir)
        samples = load_samples(root, load_labelled_dataset(root).items)
        where = {"source": "AMAQC_VALIDATION_DIR", "path": str(root)}
    else:
        samples = load_split(job_data, "val", seed=0)
        where = {"source": "val split of the job's data", "path": str(job_data)}
    samples = with_both_classes(samples, VALIDATION_SEED)
    labels = np.array([s.label for s in samples], dtype=int)
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.name}\t{s.label}\n".encode())
        digest.update(np.ascontiguousarray(s.pixels, dtype=np.float32).tobytes())
    counts = describe(samples)
    description = {
        **where,
        "slices": counts["slices"],
        "clean": counts["clean"],
        "artifact": counts["artifact"],
        "fingerprint": digest.hexdigest()[:16],
    }
    return ValidationSet(samples, labels, description)


def score(checkpoint: Path, valset: ValidationSet) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of the checkpoint at its own threshold, and its (N,) probabilities."""
    from model import Predictor
    from training.evaluate import binary_metrics, predict_samples

    predictor = Predictor(checkpoint)
    probs = predict_samples(predictor, valset.samples)
    metrics = binary_metrics(valset.labels.tolist(), probs.tolist(), predictor.threshold)
    metrics.pop("confusion", None)
    return metrics, probs


def key(metrics: dict[str, Any]) -> tuple[float, float]:
    return (float(metrics["f1"]), float(metrics.get("roc_auc") or 0.0))


def beats(candidate: dict[str, Any], active: dict[str, Any]) -> bool:
    """True when the candidate's (F1, ROC-AUC) is strictly greater than the active one's."""
    return key(candidate) > key(active)


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    from training.evaluate import plot_roc

    return plot_roc({name: (y.tolist(), p.tolist()) for name, (y, p) in curves.items()}, path)


def verify_loads(checkpoint: Path) -> None:
    """Load the checkpoint as the inference worker will and score one blank slice; raises
    (``model.CheckpointError`` and friends) when it cannot serve."""
    from model import Predictor

    Predictor(checkpoint, device="cpu").predict([np.zeros((64, 64), dtype=np.float32)])
