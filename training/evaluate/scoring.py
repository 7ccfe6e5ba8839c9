"""Evaluate a checkpoint on a labelled split: the paper's metrics, confusion matrix, ROC curve,
per-artifact-kind / per-severity / per-source breakdown, a JSON summary and per-image CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from model import Predictor
from model.acquisition import of_contrast

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
    samples: Sequence[Sample],
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float | np.ndarray,
    key: str,
) -> dict[str, dict[str, Any]]:
    """Per value of ``info[key]`` (``kind``, ``severity``, ``source``); ``threshold`` one
    number or one per slice."""
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


def acquisition_names(samples: Sequence[Sample]) -> np.ndarray:
    """Each sample's acquisition family (:mod:`model.acquisition`): from its manifest's
    ``contrast`` (``DWI-b0`` and ``EPI`` are echo-planar), else its source's."""
    from ..data.sources import SOURCES

    out = []
    for s in samples:
        contrast = s.info.get("contrast")
        if not contrast:
            source = SOURCES.get(s.info.get("source", s.group))
            contrast = source.contrast if source is not None else ""
        out.append(of_contrast(contrast))
    return np.array(out)


def family_thresholds(
    families: Sequence[str] | np.ndarray,
    threshold: float,
    by_acquisition: Mapping[str, float] | None,
) -> np.ndarray:
    """(N,) the threshold each slice's series would get: its family's (``families``, e.g. of
    :func:`acquisition_names`) in ``by_acquisition``, else ``threshold``."""
    found = by_acquisition or {}
    return np.array([float(found.get(a, threshold)) for a in families], dtype=np.float64)


def target_mask(samples: Sequence[Sample]) -> np.ndarray | None:
    """Clean slices plus artifacts of a TARGET_SEVERITIES severity; None when the data carries
    no severities."""
    severities = np.array([s.info.get("severity", "") for s in samples])
    if not (severities != "").any():
        return None
    labels = np.array([s.label for s in samples])
    return (labels == 0) | np.isin(severities, TARGET_SEVERITIES)


def summarise(
    samples: Sequence[Sample],
    probs: np.ndarray,
    threshold: float,
    split: str,
    *,
    by_acquisition: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The metrics summary of ``probs`` on ``samples`` at ``threshold`` (see ``evaluate``), or,
    with ``by_acquisition``, at each slice's family's threshold (``threshold`` for the others);
    ``moderate_and_severe_pooled`` then keeps the metrics at ``threshold`` alone."""
    labels = np.array([s.label for s in samples])
    applied: float | np.ndarray = (
        family_thresholds(acquisition_names(samples), threshold, by_acquisition)
        if by_acquisition
        else float(threshold)
    )
    summary: dict[str, Any] = {
        "split": split,
        "checkpoint_threshold": threshold,
        "metrics": binary_metrics(labels, probs, applied),
    }
    if by_acquisition:
        summary["acquisition_thresholds"] = dict(by_acquisition)
    target = target_mask(samples)
    if target is not None:
        cut = applied[target] if isinstance(applied, np.ndarray) else applied
        summary["moderate_and_severe"] = binary_metrics(labels[target], probs[target], cut)
        if by_acquisition:
            summary["moderate_and_severe_pooled"] = binary_metrics(
                labels[target], probs[target], threshold
            )
    for key in ("kind", "severity", "source"):
        rows = breakdown(samples, labels, probs, applied, key)
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
    by_acquisition = dict(predictor.fusion.acquisition_thresholds) if predictor.fusion else {}
    summary = summarise(samples, probs, threshold, split, by_acquisition=by_acquisition)
    families = acquisition_names(samples)
    applied = family_thresholds(families, threshold, by_acquisition)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        labels = [s.label for s in samples]
        plot_roc({f"{split} ({len(samples)} slices)": (labels, probs)}, out_dir / "roc.png")
        plot_confusion(
            summary["metrics"]["confusion"],
            out_dir / "confusion.png",
            title=f"{split}, threshold {threshold:.3f}"
            + (" (per acquisition family)" if by_acquisition else ""),
        )
        with (out_dir / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                [
                    "file",
                    "probability",
                    "label",
                    "true_label",
                    "kind",
                    "severity",
                    "acquisition",
                    "threshold",
                ]
            )
            for s, p, t, a in zip(samples, probs, applied, families, strict=True):
                writer.writerow(
                    [
                        s.name,
                        f"{p:.6f}",
                        int(p >= t),
                        s.label,
                        s.info.get("kind", ""),
                        s.info.get("severity", ""),
                        a,
                        f"{t:.6f}",
                    ]
                )
    return summary
