"""The admin model page's model card: a version's checkpoint metadata (``model/checkpoint.py``
``CheckpointMeta``, read from the safetensors header without torch) in words and tables.

What it shows: name, status (active / shadow / inactive), what decides a verdict (AMAResNet, or
the fused detector of ``fusion``), the threshold and the rule that chose it, held-out metrics per
split, the training data and run. Every part is optional: a checkpoint without a field (older
files, tiny test models, a file that can no longer be read) gets a line saying it is not
recorded, never an error. Pure functions of the row and the metadata; ``admin.py`` reads the
file.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.db.models import ModelVersion
from app.model_versions import CheckpointUnusable, checkpoint_metadata
from model.acquisition import ACQUISITION_LABELS

#: the held-out metrics of a split, in the table's order, and how the table names them
METRIC_COLUMNS = (
    ("n", "slices"),
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("roc_auc", "ROC-AUC"),
)
_METRIC_KEYS = {k for k, _ in METRIC_COLUMNS} | {"threshold"}
#: the splits the training code writes, in the order the card lists them, with what they are
SPLITS = {
    "train": "training: what the network learnt from",
    "val": "validation: picks the epoch and AMAResNet's threshold",
    "calib": "calibration: picks the fused detector's threshold",
    "test": "held out: subjects never seen in training",
    "transfer": "held out: contrasts never trained on",
    "xsim": "held out: another simulator's artifacts (TorchIO)",
    "msim": "held out: a third simulator's artifacts (MONAI: Gibbs ringing, spikes, noise)",
}
MODSEV = "modsev_"
#: ``fusion.info.variant``: which inputs the fused detector reads
VARIANTS = {
    "iqm": "the image-quality metrics panel alone",
    "fused": "AMAResNet's probability + the image-quality metrics panel",
    "cnn": "AMAResNet's probability alone (recalibrated)",
    "spectral": "the image-quality metrics panel + the spectral network (k-space CNN)",
    "all": "AMAResNet's probability + the image-quality metrics panel + the spectral network",
}
NOT_RECORDED = "not recorded in the checkpoint"


@lru_cache(maxsize=16)
def _metadata(path: str, sha256: str) -> dict[str, Any] | str:
    """The checkpoint's metadata, or why it cannot be read (cached per file and content)."""
    del sha256  # part of the cache key: a replaced file is read again
    try:
        return checkpoint_metadata(Path(path))
    except (CheckpointUnusable, OSError) as exc:
        return str(exc)


def read_metadata(version: ModelVersion) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None), or (None, the reason it could not be read)."""
    found = _metadata(version.checkpoint_path, version.sha256)
    return (found, None) if isinstance(found, dict) else (None, found)


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "\u2013"  # an en dash: no value
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _split_order(split: str) -> tuple[int, str]:
    order = list(SPLITS)
    return (order.index(split) if split in order else len(order), split)


def _cells(values: Mapping[str, Any]) -> list[str]:
    """One table row's metric cells, in ``METRIC_COLUMNS`` order (counts as integers)."""
    return [_number(values.get(k), 0 if k == "n" else 3) for k, _ in METRIC_COLUMNS]


def metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the held-out metrics table from the flat keys the training code writes:
    ``<split>_<metric>`` (all slices) and ``<split>_modsev_<metric>`` (clean slices + moderate
    and severe artifacts only). Keys of another shape are left out."""
    found: dict[tuple[str, bool], dict[str, Any]] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        split, sep, rest = key.partition("_")
        if not sep:
            continue
        modsev = rest.startswith(MODSEV)
        metric = rest.removeprefix(MODSEV)
        if metric in _METRIC_KEYS:
            found.setdefault((split, modsev), {})[metric] = value
    rows = []
    for (split, modsev), values in sorted(
        found.items(), key=lambda kv: (*_split_order(kv[0][0]), kv[0][1])
    ):
        rows.append(
            {
                "split": split,
                "subset": "moderate + severe artifacts only" if modsev else "all slices",
                "about": SPLITS.get(split, ""),
                "cells": _cells(values),
            }
        )
    return rows


def fused_rows(info_metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the fused detector's table (``fusion.info.metrics``: per split the metrics and
    the confusion counts at its threshold)."""
    rows = []
    for split in sorted(info_metrics, key=_split_order):
        values = _dict(info_metrics[split])
        if not values:
            continue
        confusion = _dict(values.get("confusion"))
        rows.append(
            {
                "split": split,
                "about": SPLITS.get(split, ""),
                "cells": _cells(values),
                "found": _number(confusion.get("tp")),
                "missed": _number(confusion.get("fn")),
                "false_alarms": _number(confusion.get("fp")),
                "clean_passed": _number(confusion.get("tn")),
            }
        )
    return rows


def _without_empty_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The column labels and ``rows`` without the columns no row has a value in (a checkpoint
    that records the slice count of one split only, say)."""
    keep = [i for i in range(len(METRIC_COLUMNS)) if any(r["cells"][i] != "\u2013" for r in rows)]
    labels = [METRIC_COLUMNS[i][1] for i in keep]
    return labels, [{**r, "cells": [r["cells"][i] for i in keep]} for r in rows]


def _status(version: ModelVersion) -> dict[str, str]:
    if version.active:
        return {"key": "active", "text": "active: it decides every new series' verdict"}
    if version.shadow:
        return {
            "key": "shadow",
            "text": "shadow: it scores every new series beside the active version; nobody "
            "sees its verdicts",
        }
    return {"key": "inactive", "text": "inactive: registered, not scoring series"}


def _threshold(version: ModelVersion, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The threshold a slice probability is compared with, the rule that chose it and, with a
    fused detector, AMAResNet's own threshold."""
    fusion = _dict(meta.get("fusion"))
    info = _dict(fusion.get("info"))
    rule = _dict(info.get("rule"))
    config = _dict(_dict(meta.get("training")).get("config"))
    recorded = fusion.get("threshold", meta.get("threshold"))
    facts: list[tuple[str, str]] = []
    if fusion:
        text = str(rule.get("rule") or NOT_RECORDED)
        if info.get("threshold_set"):
            facts.append(("chosen on the split", str(info["threshold_set"])))
        bound = rule.get(
            "max_false_alarm_rate_per_source", info.get("max_false_alarm_rate_per_source")
        )
        if isinstance(bound, int | float):
            facts.append(
                ("false alarms allowed per source", f"at most {bound:.0%} of clean slices")
            )
        if rule.get("binding_source"):
            facts.append(("the source that bounds it", str(rule["binding_source"])))
        if isinstance(rule.get("f1"), int | float):
            facts.append(("F1 there", _number(rule["f1"])))
        if isinstance(rule.get("oracle_f1"), int | float):
            facts.append(("best F1 without the bound", _number(rule["oracle_f1"])))
        families = _dict(fusion.get("acquisition_thresholds"))
        for family, value in sorted(families.items()):
            if isinstance(value, int | float):
                label = ACQUISITION_LABELS.get(str(family), str(family))
                facts.append((f"threshold for {label} series", _number(value)))
        if families:
            facts.append(("a series of unknown acquisition", "the threshold above"))
        if isinstance(meta.get("threshold"), int | float):
            facts.append(("AMAResNet's own threshold", _number(meta["threshold"])))
    elif config:
        split = config.get("val_split") or "validation"
        bound = config.get("max_false_alarm_rate")
        text = f"F1-optimal on the {split} split" + (
            f" among thresholds that flag at most {bound:.0%} of its clean slices"
            if isinstance(bound, int | float)
            else ""
        )
    else:
        text = NOT_RECORDED
    differs = (
        isinstance(recorded, int | float) and abs(float(recorded) - float(version.threshold)) > 5e-4
    )
    return {
        "value": _number(version.threshold),
        "rule": text,
        "facts": facts,
        "checkpoint_value": _number(recorded) if differs else None,
    }


def _detector(meta: Mapping[str, Any]) -> str:
    arch = meta.get("arch")
    net = f"the network ({arch})" if arch else "the network (architecture not recorded)"
    fusion = _dict(meta.get("fusion"))
    if not fusion:
        return f"{net} alone: its slice probability is the verdict's"
    info = _dict(fusion.get("info"))
    inputs = VARIANTS.get(str(info.get("variant")), "its recorded features")
    n = len(fusion.get("features") or [])
    return (
        f"a fused detector: logistic regression over {n} features ({inputs}); the probability "
        f"of {net} is kept with every verdict"
    )


def _training_data(meta: Mapping[str, Any], version: ModelVersion) -> list[dict[str, Any]]:
    data = _dict(_dict(meta.get("training")).get("data")) or {
        k: v for k, v in _dict(version.data_summary).items() if k != "source"
    }
    rows = []
    for split in sorted(data, key=_split_order):
        counts = _dict(data[split])
        if not counts:
            continue
        sources = _dict(counts.get("sources"))
        rows.append(
            {
                "split": split,
                "slices": _number(counts.get("slices")),
                "clean": _number(counts.get("clean")),
                "artifact": _number(counts.get("artifact")),
                "groups": _number(counts.get("groups")),
                "sources": ", ".join(f"{name} ({n})" for name, n in sorted(sources.items())),
            }
        )
    return rows


def _training_run(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    training = _dict(meta.get("training"))
    config = _dict(training.get("config"))
    facts: list[tuple[str, str]] = []
    if isinstance(training.get("best_epoch"), int):
        epochs = config.get("epochs")
        facts.append(
            (
                "best epoch",
                f"{training['best_epoch'] + 1}" + (f" of up to {epochs}" if epochs else ""),
            )
        )
    if isinstance(training.get("samples_seen"), int):
        facts.append(("patches seen", f"{training['samples_seen']:,}"))
    if isinstance(training.get("seconds"), int | float):
        facts.append(("training time", f"{training['seconds'] / 60:.0f} min"))
    if config.get("kinds"):
        severities = ", ".join(config.get("severities") or [])
        facts.append(
            (
                "simulated artifacts",
                ", ".join(config["kinds"]) + (f" ({severities})" if severities else ""),
            )
        )
    if isinstance(config.get("alpha"), int | float) and isinstance(config.get("beta"), int | float):
        facts.append(("loss", f"{config['alpha']:g} x cross-entropy + {config['beta']:g} x Dice"))
    if config.get("init_from"):
        facts.append(("fine-tuned from", Path(str(config["init_from"])).name))
    if config.get("seed") is not None:
        facts.append(("seed", str(config["seed"])))
    fusion_training = _dict(_dict(_dict(meta.get("fusion")).get("info")).get("training"))
    if fusion_training:
        slices, split = _number(fusion_training.get("slices")), fusion_training.get("split", "?")
        text = f"{slices} slices of the {split} split"
        if isinstance(fusion_training.get("artifact"), int):
            text += f" ({fusion_training['artifact']:,} with an artifact)"
        if fusion_training.get("simulator"):
            text += f"; artifacts by {fusion_training['simulator']}"
        facts.append(("fused detector fitted on", text))
    return facts


def model_card(
    version: ModelVersion, meta: Mapping[str, Any] | None, problem: str | None = None
) -> dict[str, Any]:
    """The card of ``version`` from its checkpoint metadata ``meta`` (None when the file could
    not be read: ``problem`` says why, and the card falls back to what the row holds)."""
    meta = meta or {}
    fusion = _dict(meta.get("fusion"))
    metrics = _dict(meta.get("metrics")) or _dict(version.metrics)
    patch = meta.get("patch_size")
    norm = _dict(meta.get("normalization"))
    metric_columns, metric_table = _without_empty_columns(metric_rows(metrics))
    fused_columns, fused_table = _without_empty_columns(
        fused_rows(_dict(_dict(fusion.get("info")).get("metrics")))
    )
    return {
        "name": version.name,
        "status": _status(version),
        "created": str(meta.get("created_at") or NOT_RECORDED),
        "amaqc_version": meta.get("amaqc_version"),
        "detector": _detector(meta) if meta else NOT_RECORDED,
        "input": (
            f"slices resized to {norm.get('size', '?')} px, cut into {patch} px patches"
            if patch
            else NOT_RECORDED
        ),
        "threshold": _threshold(version, meta),
        "metric_columns": metric_columns,
        "metrics": metric_table,
        "fused_columns": fused_columns,
        "fused_metrics": fused_table,
        "choice": _dict(fusion.get("info")).get("choice"),
        "training_data": _training_data(meta, version),
        "training_run": _training_run(meta),
        "problem": problem,
    }
