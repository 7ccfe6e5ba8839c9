"""Refuse what the detector cannot judge, before anything is stored.

A slice smaller than one patch of the active model, a slice whose pixels are all the same
value, and a NIfTI of more than one volume (the detector judges 3-D volumes; storing the
first and dropping the rest would keep part of a file) are 422s naming the file and why.
The smallest side comes from the active checkpoint's own ``patch_size``, read once per
checkpoint from its header; with no active model there is no size to check against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import IngestError


@lru_cache(maxsize=16)
def _patch_size(checkpoint_path: str, sha256: str) -> int:
    """``patch_size`` of a checkpoint's metadata (``sha256`` keys the cache to its bytes)."""
    from app.model_versions import CheckpointUnusable, checkpoint_metadata

    try:
        return int(checkpoint_metadata(Path(checkpoint_path)).get("patch_size", 1))
    except (CheckpointUnusable, TypeError, ValueError):
        return 1  # the worker will say what is wrong with the checkpoint


def detector_min_side(database_url: str) -> int:
    """The smallest side (pixels) of a slice the active model can judge: its patch size;
    1 when no model is active."""
    from app.db import repo
    from app.db.session import session_scope

    with session_scope(database_url) as session:
        version = repo.active_model_version(session)
        if version is None:
            return 1
        return _patch_size(version.checkpoint_path, version.sha256)


def check_slices(name: str, pixels: Sequence[np.ndarray], min_side: int) -> None:
    """Raise a 422 naming ``name`` (and the slice of a multi-slice file) when a slice is
    smaller than ``min_side`` x ``min_side`` or has one value only."""
    for index, image in enumerate(pixels):
        where = name if len(pixels) == 1 else f"{name}: slice {index + 1} of {len(pixels)}"
        rows, cols = int(image.shape[0]), int(image.shape[1])
        if min(rows, cols) < min_side:
            raise IngestError(
                422,
                f"{where}: image is {rows}x{cols}; the detector needs at least "
                f"{min_side}x{min_side} (the active model's patch size)",
            )
        low, high = float(image.min()), float(image.max())
        if low == high:
            raise IngestError(
                422,
                f"{where}: every pixel is {low:g}, an image without contrast that cannot be "
                "judged; send the slice as acquired",
            )


def check_volumes(name: str, shape: Sequence[int]) -> None:
    """Refuse a NIfTI whose dimensions past the third hold more than one volume."""
    volumes = math.prod(int(n) for n in shape[3:])
    if volumes > 1:
        raise IngestError(
            422,
            f"{name}: a NIfTI of {volumes} volumes (shape {'x'.join(str(n) for n in shape)}); "
            "send one 3-D volume per file (the detector judges one volume; a file is stored "
            "whole or not at all)",
        )
