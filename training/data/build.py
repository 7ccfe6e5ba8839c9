"""Build the base dataset: clean real slices as 16-bit PNGs, split by subject.

The split is a function of the *subject* a source shows, never of the slice, so one person's
slices cannot leak between splits (the three Colin27 files are one person). The plan it encodes:
train on T1 subjects and templates; calibrate the decision threshold on a contrast unlike
training (val: DWI b0 + one T1 slice); test on a T1 subject never seen; keep EPI and
anisotropic DWI out of training altogether to measure transfer.

Layout (the same ``<split>/clean|artifact/`` layout users bring their own folders in)::

    out_dir/<split>/clean/<source>_<plane>_<index:03d>.png   16-bit grayscale
    out_dir/manifest.csv                                      one row per PNG
    out_dir/sources.json                                      package, version, licence, ...

Only ``clean/`` is written here; artifacts are simulated from it later.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .slices import slices_from_path, to_uint16
from .sources import SOURCES, fetch_sources

__all__ = [
    "MANIFEST_COLUMNS",
    "SPLITS",
    "SPLIT_OF_SUBJECT",
    "BuildSummary",
    "build_dataset",
    "split_of",
]

SPLITS: Final = ("train", "val", "test", "transfer")
SPLIT_OF_SUBJECT: Final[dict[str, str]] = {
    "colin27": "train",  # ch2, ch2bet, ch2better: one person
    "mni152": "train",
    "mriqc_0017": "train",
    "dipy_s0": "val",
    "dipy_t1": "val",
    "mriqc_0042": "test",
    "nibabel_epi": "transfer",
    "dipy_aniso": "transfer",
}
MANIFEST_COLUMNS: Final = (
    "file",
    "split",
    "label",
    "source",
    "subject",
    "contrast",
    "plane",
    "index",
)
CLEAN: Final = 0
_MARKERS: Final = ("manifest.csv", "sources.json")  # what makes a folder one of our datasets


def split_of(source: str) -> str:
    """The split every slice of ``source`` belongs to (decided by its subject).

    Raises:
        ValueError: unknown source, or a source whose subject has no split.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    subject = SOURCES[source].subject
    if subject not in SPLIT_OF_SUBJECT:
        raise ValueError(f"source {source!r}: subject {subject!r} has no split")
    return SPLIT_OF_SUBJECT[subject]


@dataclass(frozen=True)
class BuildSummary:
    """What :func:`build_dataset` wrote: slice counts per split and per source."""

    out_dir: Path
    per_split: dict[str, int]
    per_source: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_split.values())

    @property
    def manifest(self) -> Path:
        return self.out_dir / "manifest.csv"


def build_dataset(
    out_dir: Path,
    cache_dir: Path,
    *,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    step_mm: float = 2.0,
    min_anatomy: float = 0.15,
) -> BuildSummary:
    """Fetch every source into ``cache_dir`` (if needed) and write the clean dataset.

    The slicing is deterministic; ``seed`` is recorded in ``sources.json`` so the later random
    steps (artifact simulation) can be tied to the dataset they were run on. The dataset is
    written to a temporary sibling folder and renamed into place, so a failed build never leaves
    a half-written ``out_dir`` (nor deletes the old one).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False, or it is not an
            amaqc dataset (no manifest.csv / sources.json) and would be deleted.
        training.data.sources.SourceError: a source could not be fetched.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    paths = fetch_sources(cache_dir, progress=progress)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary folder
    try:
        rows, per_source = _write_slices(tmp, paths, step_mm, min_anatomy, progress)
        _write_manifest(tmp / "manifest.csv", rows)
        _write_provenance(tmp / "sources.json", per_source, seed, step_mm, min_anatomy)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    per_split = dict.fromkeys(SPLITS, 0)
    for name, n in per_source.items():
        per_split[split_of(name)] += n
    return BuildSummary(out_dir=out_dir, per_split=per_split, per_source=per_source)


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True to rebuild it")
    if not any((out_dir / m).is_file() for m in _MARKERS):
        raise FileExistsError(
            f"refusing to overwrite {out_dir}: it is not an amaqc dataset "
            f"(no {' or '.join(_MARKERS)})"
        )


def _write_slices(
    root: Path, paths: dict[str, Path], step_mm: float, min_anatomy: float, progress: bool
) -> tuple[list[dict[str, str | int]], dict[str, int]]:
    rows: list[dict[str, str | int]] = []
    per_source: dict[str, int] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("slicing sources", total=len(paths))
        for name, path in paths.items():
            bar.update(task, description=f"slicing {name}")
            source, split = SOURCES[name], split_of(name)
            folder = root / split / "clean"
            folder.mkdir(parents=True, exist_ok=True)
            records = slices_from_path(
                path, planes=source.planes, step_mm=step_mm, min_anatomy=min_anatomy
            )
            for plane, index, image in records:
                file = folder / f"{name}_{plane}_{index:03d}.png"
                Image.fromarray(to_uint16(image)).save(file)
                rows.append(
                    {
                        "file": file.relative_to(root).as_posix(),
                        "split": split,
                        "label": CLEAN,
                        "source": name,
                        "subject": source.subject,
                        "contrast": source.contrast,
                        "plane": plane,
                        "index": index,
                    }
                )
            per_source[name] = len(records)
            bar.advance(task)
    return rows, per_source


def _write_manifest(path: Path, rows: list[dict[str, str | int]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: str(r["file"])))


def _write_provenance(
    path: Path, per_source: dict[str, int], seed: int, step_mm: float, min_anatomy: float
) -> None:
    sources = {
        name: {
            "package": s.package,
            "registry": s.registry,
            "version": s.version,
            "license": s.license,
            "member": s.member,
            "sha256": s.sha256,
            "subject": s.subject,
            "contrast": s.contrast,
            "kind": s.kind,
            "planes": list(s.planes),
            "split": split_of(name),
            "slices": per_source[name],
        }
        for name, s in SOURCES.items()
        if name in per_source
    }
    info = {
        "seed": seed,
        "step_mm": step_mm,
        "min_anatomy": min_anatomy,
        "splits": SPLIT_OF_SUBJECT,
        "sources": sources,
    }
    path.write_text(json.dumps(info, indent=2) + "\n")
