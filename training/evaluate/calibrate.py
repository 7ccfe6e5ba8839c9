"""Choose a checkpoint's decision threshold again, on a site's own labelled images.

A threshold chosen on the project's validation split (DWI b0 slices of one volume, 10
independent slices) is a noisy guess for another site's scanners, contrasts and artifact mix:
the network's ranking of images transfers better than any single cut-off does. ``calibrate``
keeps the weights and picks the threshold on images the site has labelled (a folder with
``clean/`` and ``artifact/``, or a folder plus a labels sheet, or one split of a built dataset)
by the same rule training uses: the F1-optimal threshold among those that flag at most
``max_false_alarm_rate`` of the clean images. The result is an ordinary checkpoint whose
metadata records where its threshold came from.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from model import Predictor, load_checkpoint
from model.checkpoint import load_spectral, save_checkpoint

from ..data.labelled import load_labelled_dataset
from ..data.samples import Sample, load_samples, load_split
from .metrics import best_threshold
from .scoring import predict_samples, summarise

#: below this many clean images a 10 % false-alarm bound rests on one or two of them
FEW_CLEAN = 50
#: ``split`` value meaning "every labelled image in the folder"
ALL = "all"


def load_calibration_set(data: Path, split: str = ALL) -> tuple[list[Sample], int]:
    """Every labelled image under ``data`` (``split="all"``) or one split of a built dataset,
    and the number of files skipped as unreadable."""
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such folder")
    if split != ALL:
        return load_split(data, split), 0
    dataset = load_labelled_dataset(data, verify=True)
    return load_samples(data, dataset.items), len(dataset.unreadable)


#: safetensors dtype names of floating tensors -> the dtype to store a copy in
_FLOAT_DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float32,
}


def stored_dtype(path: Path) -> torch.dtype:
    """The dtype of the first floating tensor in a checkpoint file (float16 or float32)."""
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open has no iter)
            name = f.get_slice(key).get_dtype()
            if name in _FLOAT_DTYPES:
                return _FLOAT_DTYPES[name]
    return torch.float32


def calibrate(
    checkpoint: Path,
    data: Path,
    out: Path,
    *,
    split: str = ALL,
    max_false_alarm_rate: float | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Write ``out``: ``checkpoint`` with its threshold chosen on ``data``.

    ``max_false_alarm_rate`` defaults to the bound the checkpoint's training recorded (0.1 when
    it recorded none); 1.0 leaves F1 unconstrained. Returns the calibration record (also
    stored in the new checkpoint's metadata under ``training.calibration``).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    net, meta = load_checkpoint(checkpoint)
    spectral = load_spectral(checkpoint, meta)
    if max_false_alarm_rate is None:
        recorded = (meta.training.get("config") or {}).get("max_false_alarm_rate", 0.1)
        max_false_alarm_rate = 0.1 if recorded is None else float(recorded)
    if not 0.0 <= max_false_alarm_rate <= 1.0:
        raise ValueError(f"max_false_alarm_rate must be in [0, 1], got {max_false_alarm_rate}")
    samples, skipped = load_calibration_set(data, split)
    labels = [s.label for s in samples]
    clean, artifact = labels.count(0), labels.count(1)
    if not clean or not artifact:
        raise ValueError(
            f"{data}: calibration needs clean and artifact images, found {clean} clean and "
            f"{artifact} artifact"
        )
    probs = predict_samples(Predictor((net, meta), device=device, spectral=spectral), samples)
    threshold = best_threshold(labels, probs, max_false_alarm_rate)
    summary = summarise(samples, probs, threshold, split)
    metrics = summary["metrics"]
    record: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "clean": clean,
        "artifact": artifact,
        "groups": len({s.group for s in samples}),
        "skipped": skipped,
        "max_false_alarm_rate": max_false_alarm_rate,
        "previous_threshold": meta.threshold,
        "threshold": threshold,
        "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
        "confusion": metrics["confusion"],
        "from": checkpoint.name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if "moderate_and_severe" in summary:
        sub = summary["moderate_and_severe"]
        record["moderate_and_severe"] = {k: v for k, v in sub.items() if k != "confusion"}
    new_meta = replace(
        meta,
        threshold=threshold,
        training={**meta.training, "calibration": record},
    )
    save_checkpoint(
        out,
        net,
        new_meta,
        dtype=stored_dtype(checkpoint),
        spectral=spectral,
    )
    return record
