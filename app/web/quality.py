"""The viewer's quality panel: each IQM of a slice in plain words, and how much it pushed the
fused detector's verdict (its additive share of the logit), largest first."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from app.model_versions import CheckpointUnusable, checkpoint_metadata
from model.fusion import FusionError, FusionModel, fusion_features, logit
from model.iqm import IQM_INFO

#: How far a stored probability is trusted when turned back into the logit it came from: float64
#: keeps 1 - p to ~1e-16, so logits within +-27 come back as they went in.
STORED_CLIP = 1e-12


@lru_cache(maxsize=8)
def _fusion_of(checkpoint_path: str) -> FusionModel | None:
    """The checkpoint's fusion model (header only, no torch), None when it has none."""
    try:
        meta = checkpoint_metadata(Path(checkpoint_path))
        return FusionModel.from_dict(meta["fusion"]) if meta.get("fusion") else None
    except (CheckpointUnusable, FusionError, OSError):
        return None


def quality_rows(
    iqms: dict[str, float] | None,
    cnn_probability: float | None,
    patch_map: list[Any] | None,
    checkpoint_path: str | None,
    *,
    spectral_probability: float | None = None,
) -> list[dict[str, Any]]:
    """One row per metric: ``label``, ``value``, ``better``, ``artifact`` (what a bad value
    points to) and ``push`` (its share of the fused logit; 0 where the model does not use it),
    sorted by ``push``, largest first. Where the slice has a ``spectral_probability`` (the
    spectral network's, ``model.spectral``), it is one more row."""
    if not iqms:
        return []
    fusion = _fusion_of(checkpoint_path) if checkpoint_path else None
    pushes: dict[str, float] = {}
    spectral_logit = None
    if spectral_probability is not None:  # stored as sigmoid(logit): invert it, finely clipped
        spectral_logit = logit(spectral_probability, STORED_CLIP)
    if fusion is not None:
        patches = np.asarray(patch_map, dtype=float) if patch_map else None
        row = fusion_features(cnn_probability, patches, iqms, spectral_logit)
        pushes = fusion.contributions(row)
    rows = []
    if spectral_probability is not None:
        rows.append(
            {
                "name": "spectral",
                "label": "spectral network (k-space pattern)",
                "value": f"{spectral_probability:.3g}",
                "better": "lower",
                "artifact": "spikes, ghosts, motion or ringing seen in the slice's k-space",
                "push": round(pushes.get("spectral_logit", 0.0), 3),
            }
        )
    for name, value in iqms.items():
        info = IQM_INFO.get(name)
        if info is None:
            continue
        rows.append(
            {
                "name": name,
                "label": info.label,
                "value": f"{value:.3g}",
                "better": info.better,
                "artifact": info.artifact,
                "push": round(pushes.get(f"iqm_{name}", 0.0), 3),
            }
        )
    return sorted(rows, key=lambda r: -r["push"])
