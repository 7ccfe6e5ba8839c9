"""Labelled slices in memory, split into train / val / test without leakage, plus the per-file
metadata (source, artifact kind, severity) that ``amaqc data build`` records in manifest.csv."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .labelled import LabelledItem, load_labelled_dataset
from .readers import read_slices

MANIFEST = "manifest.csv"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Sample:
    """One labelled 2-D slice held in memory.

    ``pixels`` is (H, W) float32 in the file's own units; ``label`` 1 = artifact; ``name`` is the
    file path relative to the dataset root (``#k`` appended for slice k of a multi-slice file);
    ``info`` carries manifest columns such as ``source``, ``kind`` and ``severity``.
    """

    pixels: np.ndarray
    label: int
    group: str
    name: str
    info: dict[str, str] = field(default_factory=dict)


def read_manifest(root: Path) -> dict[str, dict[str, str]]:
    """``root/manifest.csv`` rows keyed by their ``file`` column; empty when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f) if row.get("file")}


def _group_split(group: str, seed: int, fractions: tuple[float, float]) -> str:
    """Deterministic split of a group id: a hash, not a shuffle, so adding data moves nothing."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, val = fractions
    return "train" if u < train else "val" if u < train + val else "test"


def assign_splits(
    items: list[LabelledItem], *, seed: int = 0, fractions: tuple[float, float] = (0.7, 0.15)
) -> dict[str, list[LabelledItem]]:
    """Items per split; the layout's own split wins, otherwise whole groups (patients / volumes)
    are assigned by hash: every slice of a group lands in the same split."""
    out: dict[str, list[LabelledItem]] = {s: [] for s in SPLITS}
    for item in items:
        split = item.split or _group_split(item.group, seed, fractions)
        out.setdefault(split, []).append(item)
    return out


def load_samples(root: Path, items: list[LabelledItem]) -> list[Sample]:
    """Decode the items' slices into memory (each file read once)."""
    manifest = read_manifest(root)
    by_file: dict[Path, list[LabelledItem]] = {}
    for item in items:
        by_file.setdefault(item.path, []).append(item)
    samples = []
    for path, file_items in by_file.items():
        slices = read_slices(path)
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        for item in file_items:
            name = rel if len(slices) == 1 else f"{rel}#{item.slice_index}"
            info = dict(manifest.get(rel, {}))
            samples.append(
                Sample(slices[item.slice_index].pixels, item.label, item.group, name, info)
            )
    return samples


def load_split(root: Path, split: str, *, seed: int = 0) -> list[Sample]:
    """The samples of one split of a dataset folder.

    ``split`` is ``train``/``val``/``test`` (from the layout, or by group hash when the layout
    has none) or the name of any sub-folder holding ``clean/`` and ``artifact/`` (e.g.
    ``transfer``).
    """
    root = Path(root)
    if split not in SPLITS:
        sub = root / split
        if not sub.is_dir():
            raise ValueError(f"{root}: no split {split!r} (no folder {sub.name}/)")
        dataset = load_labelled_dataset(sub)
        samples = load_samples(sub, dataset.items)
        manifest = read_manifest(root)
        return [
            Sample(
                s.pixels,
                s.label,
                s.group,
                f"{split}/{s.name}",
                dict(manifest.get(f"{split}/{s.name}", s.info)),
            )
            for s in samples
        ]
    dataset = load_labelled_dataset(root)
    items = assign_splits(dataset.items, seed=seed)[split]
    if not items:
        raise ValueError(f"{root}: split {split!r} is empty")
    return load_samples(root, items)


def describe(samples: list[Sample]) -> dict[str, object]:
    """Counts for logs and model cards: per label, per source (when known), groups."""
    return {
        "slices": len(samples),
        "clean": sum(s.label == 0 for s in samples),
        "artifact": sum(s.label == 1 for s in samples),
        "groups": len({s.group for s in samples}),
        "sources": dict(Counter(s.info.get("source", s.group) for s in samples)),
    }
