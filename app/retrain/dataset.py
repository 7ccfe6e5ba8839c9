"""Reviewed slices -> a training folder (training worker only: imports ``training``).

Layout written: ``<out>/{train,val}/{clean,artifact}/s<series>/...png`` (16-bit PNG), so whole
series land in one split and the training module reads it like any user dataset. Every slice
reviewed as clean also yields a simulated artifact twin (kind cycled over the simulator's
kinds, severity moderate/severe, seeded per slice: the same data on every run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app import storage
from app.config import Settings

from .sources import DataSourceError, ReviewedSlice

SIM_SEVERITIES = ("moderate", "severe")


def validation_series(series_ids: Sequence[int]) -> set[int]:
    """Every 5th series (sorted by id) for validation; at least one, never all."""
    ids = sorted(set(series_ids))
    if len(ids) < 2:
        raise DataSourceError(
            f"reviews of at least 2 series are needed (one to train on, one to validate on); "
            f"found {len(ids)}"
        )
    chosen = set(ids[4::5]) or {ids[-1]}
    return chosen


def write_reviews_dataset(
    settings: Settings, slices: Sequence[ReviewedSlice], out: Path, *, seed: int
) -> dict[str, Any]:
    """Write the reviewed slices (and simulated artifact twins of the clean ones) under
    ``out``; returns counts for the data summary."""
    from training.data import UnreadableImage, read_slices
    from training.simulate import KINDS, simulate, to_png16

    val = validation_series([s.series_id for s in slices])
    counts: dict[str, Any] = {
        "reviewed_slices": 0,
        "clean": 0,
        "artifact": 0,
        "simulated": 0,
        "unreadable": 0,
        # slice labels set by the reader / accepted from the model and confirmed by the reader
        "label_by_reader": 0,
        "label_by_model_confirmed": 0,
    }
    cache: dict[str, list[Any]] = {}
    for n, item in enumerate(slices):
        split = "val" if item.series_id in val else "train"
        try:
            if item.storage_path not in cache:
                cache = {
                    item.storage_path: read_slices(
                        storage.resolve(settings.storage_dir, item.storage_path)
                    )
                }
            pixels = cache[item.storage_path][item.frame_index].pixels
        except (UnreadableImage, IndexError, ValueError, FileNotFoundError):
            counts["unreadable"] += 1
            continue
        name = f"s{item.series_id}/i{item.instance_id}"
        cls = "artifact" if item.label else "clean"
        _write(out / split / cls / f"{name}.png", pixels, to_png16)
        counts["reviewed_slices"] += 1
        counts[cls] += 1
        if item.label_by:
            counts["label_by_" + ("model_confirmed" if item.label_by == "model" else "reader")] += 1
        if item.label == 0:
            kind = KINDS[n % len(KINDS)]
            severity = SIM_SEVERITIES[(n // len(KINDS)) % len(SIM_SEVERITIES)]
            rng = np.random.default_rng([seed, item.instance_id])
            image = np.clip(pixels - float(pixels.min()), 0, None)
            corrupted, _ = simulate(image, kind, severity, rng)
            _write(out / split / "artifact" / f"{name}_{kind}_{severity}.png", corrupted, to_png16)
            counts["simulated"] += 1
    if counts["reviewed_slices"] == 0:
        raise DataSourceError("none of the reviewed slices could be read back from the store")
    counts["validation_series"] = sorted(val)
    return counts


def _write(path: Path, pixels: np.ndarray, to_png16: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_png16(np.clip(pixels, 0, None)).save(path)
