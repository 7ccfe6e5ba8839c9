"""Binary classification metrics of the paper (Acc, Precision, Recall, F1, ROC-AUC), threshold
selection on a validation set, and the plots people look at (ROC curve, confusion matrix)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def binary_metrics(
    y_true: ArrayLike, prob: ArrayLike, threshold: float | ArrayLike
) -> dict[str, Any]:
    """Metrics of ``prob >= threshold`` against ``y_true`` (1 = artifact); ``threshold`` may be
    one number or one per slice (a threshold per acquisition family: ``"threshold"`` is then
    None).

    ROC-AUC is ``None`` when only one class is present (it is undefined then).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"y_true {y.shape} and prob {p.shape} must be equal-length 1-D")
    if y.size == 0:
        raise ValueError("no samples to score")
    t = np.asarray(threshold, dtype=float)
    if t.ndim and t.shape != p.shape:
        raise ValueError(f"threshold {t.shape} must be one number or one per slice {p.shape}")
    pred = (p >= t).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist()
    both = len(np.unique(y)) == 2
    return {
        "n": int(y.size),
        "threshold": float(t) if t.ndim == 0 else None,
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def clean_only_threshold(clean_probs: ArrayLike, max_false_alarm_rate: float) -> float:
    """The lowest threshold that flags at most ``max_false_alarm_rate`` of ``clean_probs`` (the
    scores of slices known to be clean): with no artifact examples, the threshold that keeps
    every artifact it can while honouring the false-alarm bound. Above the highest score when
    the bound allows no false alarm on this many slices (``floor(bound * n) == 0``).

    Raises:
        ValueError: no scores, or a bound outside [0, 1).
    """
    p = np.sort(np.asarray(clean_probs, dtype=float).ravel())[::-1]
    if p.size == 0:
        raise ValueError("no clean scores to set a threshold on")
    if not 0.0 <= max_false_alarm_rate < 1.0:
        raise ValueError(f"max_false_alarm_rate must be in [0, 1), got {max_false_alarm_rate}")
    allowed = int(np.floor(max_false_alarm_rate * p.size + 1e-9))
    return float(np.nextafter(p[allowed], np.inf))


def best_threshold(
    y_true: ArrayLike, prob: ArrayLike, max_false_alarm_rate: float | None = None
) -> float:
    """The threshold maximising F1 on (validation) data; ties go to the higher threshold (fewer
    false alarms). Falls back to 0.5 when a class is missing.

    With ``max_false_alarm_rate``, only thresholds that flag at most that fraction of the clean
    slices count: a weak model's unconstrained F1 optimum is "flag everything" (F1 = 2p/(1+p)
    at prevalence p), which is useless to a radiographer. When even the highest score would
    flag too many clean slices, the threshold sits just above the highest clean score.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    if len(np.unique(y)) < 2:
        return 0.5
    if max_false_alarm_rate is not None and not 0.0 <= max_false_alarm_rate <= 1.0:
        raise ValueError(f"max_false_alarm_rate must be in [0, 1], got {max_false_alarm_rate}")
    clean = np.sort(p[y == 0])
    candidates = np.append(np.unique(p), np.nextafter(p.max(), np.inf))
    best, best_f1 = float(candidates[-1]), -1.0
    for t in candidates[::-1]:
        if max_false_alarm_rate is not None:
            false_alarms = len(clean) - np.searchsorted(clean, t, side="left")
            if false_alarms > max_false_alarm_rate * len(clean) + 1e-9:
                break  # lower thresholds only flag more clean slices
        f1 = f1_score(y, (p >= t).astype(int), zero_division=0)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), float(f1)
    return best


def paired_auc_difference(
    y_true: ArrayLike, old: ArrayLike, new: ArrayLike, *, rounds: int = 2000, seed: int = 0
) -> dict[str, float]:
    """ROC-AUC of ``new`` minus that of ``old`` on the same images, with a 95 % interval from a
    paired bootstrap (images resampled with replacement, both models scored on each resample;
    resamples holding one class only are skipped). Seeded: the same inputs give the same CI."""
    y, a, b = (np.asarray(v) for v in (y_true, old, new))
    if not y.shape == a.shape == b.shape or y.ndim != 1:
        raise ValueError(
            f"need three 1-D arrays of one length, got {y.shape}, {a.shape}, {b.shape}"
        )
    if len(np.unique(y)) < 2:
        raise ValueError("the ROC-AUC needs both classes")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        i = rng.integers(0, y.size, y.size)
        if y[i].min() != y[i].max():
            diffs.append(roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]))
    lo, hi = np.percentile(diffs, (2.5, 97.5))
    before, after = float(roc_auc_score(y, a)), float(roc_auc_score(y, b))
    return {
        "old": before,
        "new": after,
        "difference": after - before,
        "ci_low": float(lo),
        "ci_high": float(hi),
    }


def plot_roc(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: Path) -> Path:
    """ROC curves of one or more models on one plot, AUC in the legend: ``curves`` maps a name
    to (1-D labels, 1 = artifact; 1-D scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for name, (y, p) in curves.items():
        if len(np.unique(np.asarray(y))) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC: artifact vs clean",
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "one class only: ROC undefined", ha="center", va="center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(confusion: dict[str, int], path: Path, title: str = "confusion matrix") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="white" if v > m.max() / 2 else "black",
            fontsize=12,
        )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["clean", "artifact"],
        yticklabels=["clean", "artifact"],
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
