"""Evaluate a checkpoint on a labelled split: the paper's metrics, confusion matrix, ROC curve,
per-artifact-kind / per-severity / per-source breakdown, a JSON summary and per-image CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from model import Predictor

from ..data.samples import Sample, load_split
from .metrics import binary_metrics, plot_confusion, plot_roc

#: Severities the project's accuracy targets are stated for (issue 3).
TARGET_SEVERITIES = ("moderate", "severe")


def predict_samples(predictor: Predictor, samples: Sequence[Sample], chunk: int = 32) -> np.ndarray:
    """(N,) slice artifact probabilities."""
    probs: list[float] = []
    for i in range(0, len(samples), chunk):
        probs += [
            p.probability for p in predictor.predict([s.pixels for s in samples[i : i + chunk]])
        ]
    return np.asarray(probs, dtype=float)


def _subset(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Artifacts selected by ``mask`` against every clean slice: recall and AUC."""
    keep = (labels == 0) | mask
    pos = int(mask.sum())
    out: dict[str, Any] = {"n_artifact": pos}
    if pos:
        y, p = labels[keep], probs[keep]
        out["roc_auc"] = float(roc_auc_score(y, p)) if (y == 0).any() else None
    return out


def breakdown(
    samples: Sequence[Sample], labels: np.ndarray, probs: np.ndarray, threshold: float, key: str
) -> dict[str, dict[str, Any]]:
    """Per value of ``info[key]`` (``kind``, ``severity``, ``source``)."""
    values = np.array([s.info.get(key, "") for s in samples])
    pred = probs >= threshold
    out = {}
    for value in sorted(set(values) - {""}):
        sel = values == value
        row: dict[str, Any] = {"n": int(sel.sum())}
        art, clean = sel & (labels == 1), sel & (labels == 0)
        if art.any():
            row["recall"] = float(pred[art].mean())
            row.update(_subset(labels, probs, art))
        if clean.any():
            row["false_alarm_rate"] = float(pred[clean].mean())
        out[str(value)] = row
    return out


def source_names(samples: Sequence[Sample]) -> np.ndarray:
    """Each sample's source (``info["source"]``, else its group): what false alarms are bounded
    per, and what a site's own threshold is learned for."""
    return np.array([s.info.get("source", s.group) for s in samples])


def target_mask(samples: Sequence[Sample]) -> np.ndarray | None:
    """Clean slices plus artifacts of a TARGET_SEVERITIES severity; None when the data carries
    no severities."""
    severities = np.array([s.info.get("severity", "") for s in samples])
    if not (severities != "").any():
        return None
    labels = np.array([s.label for s in samples])
    return (labels == 0) | np.isin(severities, TARGET_SEVERITIES)


def summarise(
    samples: Sequence[Sample], probs: np.ndarray, threshold: float, split: str
) -> dict[str, Any]:
    """The metrics summary of ``probs`` on ``samples`` at ``threshold`` (see ``evaluate``)."""
    labels = np.array([s.label for s in samples])
    summary: dict[str, Any] = {
        "split": split,
        "checkpoint_threshold": threshold,
        "metrics": binary_metrics(labels, probs, threshold),
    }
    target = target_mask(samples)
    if target is not None:
        summary["moderate_and_severe"] = binary_metrics(labels[target], probs[target], threshold)
    for key in ("kind", "severity", "source"):
        rows = breakdown(samples, labels, probs, threshold, key)
        if rows:
            summary[f"by_{key}"] = rows
    return summary


def evaluate(
    predictor: Predictor,
    data: Path,
    *,
    split: str = "test",
    out_dir: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of ``predictor`` on ``split`` of the dataset at ``data``; writes
    ``summary.json``, ``roc.png``, ``confusion.png`` and ``predictions.csv`` to ``out_dir``."""
    samples = load_split(Path(data), split, seed=seed)
    probs = predict_samples(predictor, samples)
    threshold = predictor.threshold
    summary = summarise(samples, probs, threshold, split)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        labels = [s.label for s in samples]
        plot_roc({f"{split} ({len(samples)} slices)": (labels, probs)}, out_dir / "roc.png")
        plot_confusion(
            summary["metrics"]["confusion"],
            out_dir / "confusion.png",
            title=f"{split}, threshold {threshold:.3f}",
        )
        with (out_dir / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "probability", "label", "true_label", "kind", "severity"])
            for s, p in zip(samples, probs, strict=True):
                writer.writerow(
                    [
                        s.name,
                        f"{p:.6f}",
                        int(p >= threshold),
                        s.label,
                        s.info.get("kind", ""),
                        s.info.get("severity", ""),
                    ]
                )
    return summary
