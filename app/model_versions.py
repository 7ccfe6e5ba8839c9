"""Register checkpoints as ModelVersion rows, reading their metadata without torch.

A safetensors file starts with an 8-byte little-endian header length and a JSON header whose
``__metadata__["amaqc"]`` is the checkpoint metadata (see ``model/checkpoint.py``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import storage
from app.db import repo, repo_training
from app.db.models import ModelActivation, ModelVersion
from model.fusion import FusionError, acquisition_threshold_map

_MAX_HEADER = 100 * 1024 * 1024


class CheckpointUnusable(ValueError):
    """A file that is not an amaqc checkpoint, with the reason."""


def checkpoint_metadata(path: Path) -> dict[str, Any]:
    """The amaqc metadata of a safetensors checkpoint, from its header only."""
    if not path.is_file():
        raise CheckpointUnusable(f"{path}: no such checkpoint file")
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise CheckpointUnusable(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER:
            raise CheckpointUnusable(f"{path}: not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(fh.read(length))
            meta = json.loads(header["__metadata__"]["amaqc"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointUnusable(f"{path}: no amaqc metadata in the header ({exc})") from None
    if not isinstance(meta, dict) or "arch" not in meta:
        raise CheckpointUnusable(f"{path}: amaqc metadata has no 'arch'")
    return meta


def served_threshold(meta: dict[str, Any]) -> float:
    """The threshold of the detector a checkpoint serves: its fused detector's where it carries
    one (``model.fusion``), else AMAResNet's own."""
    fusion = meta.get("fusion") or {}
    if isinstance(fusion, dict) and "threshold" in fusion:
        return float(fusion["threshold"])
    return float(meta.get("threshold", 0.5))


def served_acquisition_thresholds(meta: dict[str, Any]) -> dict[str, float]:
    """The fused detector's threshold per acquisition family (``model.acquisition`` name ->
    value in [0, 1]) where the checkpoint carries them, else {} (one threshold for all).

    Checked here, not only when the worker loads the checkpoint: a version registered with a
    family it cannot name, or a value that is no probability, would give every series of that
    family a verdict on a threshold nobody chose. Raises :class:`CheckpointUnusable` naming the
    bad entry."""
    fusion = meta.get("fusion") or {}
    found = fusion.get("acquisition_thresholds") if isinstance(fusion, dict) else None
    if found is None:
        return {}
    try:
        return acquisition_threshold_map(found)
    except FusionError as exc:
        raise CheckpointUnusable(f"fusion acquisition_thresholds: {exc}") from None


def register_checkpoint(
    session: Session, path: Path, *, name: str | None = None, activate: bool = True
) -> ModelVersion:
    """The ModelVersion for ``path`` (same bytes -> the existing row), activated if asked (and
    then recorded in the activation history as kind ``register``)."""
    path = path.resolve()
    meta = checkpoint_metadata(path)
    sha = storage.sha256_file(path)
    version = repo.model_version_by_sha(session, sha)
    previous = repo.active_model_version(session) if activate else None
    if version is None:
        version = repo.add_model_version(
            session,
            ModelVersion(
                name=name or f"{path.stem}-{sha[:8]}",
                checkpoint_path=str(path),
                sha256=sha,
                arch=str(meta["arch"]),
                threshold=served_threshold(meta),
                acquisition_thresholds=served_acquisition_thresholds(meta),
                metrics=dict(meta.get("metrics") or {}),
            ),
            activate=activate,
        )
    elif activate and not version.active:
        repo.activate_model_version(session, version.id)
    else:
        return version
    if activate:
        repo_training.add_activation(
            session,
            ModelActivation(
                version_id=version.id,
                previous_version_id=previous.id if previous else None,
                kind="register",
                details={"checkpoint": str(path)},
            ),
        )
    return version
