"""Labelled image datasets in the layouts users bring.

1. Class folders: ``root/clean/**`` and ``root/artifact/**`` (any depth below them), or split
   folders ``root/{train,val,test}/{clean,artifact}/**`` where the folder gives the split.
2. A labels sheet next to the images: ``root/labels.csv`` or ``root/labels.xlsx`` (like the
   paper's label sheet) with a file column (``file``, ``filename``, ``image``, ``path``) or a
   patient id column (``patient``, ``patient_id``, ``id``) naming files, file stems or
   sub-folders, a label column (``label``, ``artifact``, ``class``) holding 0/1, clean/artifact,
   yes/no or true/false, and optionally a ``split`` column.

Every readable file contributes one :class:`LabelledItem` per slice. Listed-but-missing,
present-but-unlabelled and unreadable files are counted and reported, not fatal; a sheet
whose columns cannot be identified is (``ValueError`` naming the columns found).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .image_types import UnreadableImage
from .label_sheet import LabelRow, read_label_sheet
from .readers import count_slices, iter_image_files, read_slices

LABEL_NAMES = {0: "clean", 1: "artifact"}
CLASS_FOLDERS = {"clean": 0, "artifact": 1, "artifacts": 1, "artefact": 1, "artefacts": 1}
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
LABEL_FILES = ("labels.csv", "labels.xlsx")
Layout = Literal["class-folders", "split-folders", "labels-file"]


@dataclass(frozen=True)
class LabelledItem:
    """One labelled 2-D slice.

    Attributes:
        path: the image file.
        slice_index: index of the slice in ``read_slices(path)``.
        label: 0 = clean, 1 = artifact.
        group: id that must not straddle train/val/test: the patient id column when the sheet
            has one, else the first sub-folder below the class folder / root (a patient or
            series folder), else the file stem.
        split: "train" / "val" / "test" (or the sheet's own value) when the dataset fixes it.
    """

    path: Path
    slice_index: int
    label: int
    group: str
    split: str | None = None


@dataclass(frozen=True)
class DatasetSummary:
    """Counts of a :class:`LabelledDataset` (slices, unless named ``files``)."""

    n_items: int
    n_files: int
    n_groups: int
    per_label: dict[str, int]
    per_split: dict[str, dict[str, int]]
    n_missing: int
    n_unlabelled: int
    n_unreadable: int

    def __str__(self) -> str:
        labels = ", ".join(f"{n} {name}" for name, n in self.per_label.items())
        splits = "; ".join(
            f"{split}: " + ", ".join(f"{n} {name}" for name, n in counts.items())
            for split, counts in self.per_split.items()
        )
        return (
            f"{self.n_items} slices from {self.n_files} files in {self.n_groups} groups "
            f"({labels}) [{splits}]; {self.n_missing} missing, {self.n_unlabelled} unlabelled, "
            f"{self.n_unreadable} unreadable"
        )


@dataclass
class LabelledDataset:
    """Labelled slices found under ``root`` plus what could not be used."""

    root: Path
    layout: Layout
    items: list[LabelledItem] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed in the sheet, not found
    unlabelled: list[Path] = field(default_factory=list)  # found, no label
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def files(self) -> list[Path]:
        return list(dict.fromkeys(item.path for item in self.items))

    def summary(self) -> DatasetSummary:
        """Slice counts per label and per split (``"unsplit"`` when the layout has none)."""
        per_label = {name: 0 for name in LABEL_NAMES.values()}
        per_split: dict[str, dict[str, int]] = {}
        for item in self.items:
            name = LABEL_NAMES[item.label]
            per_label[name] += 1
            counts = per_split.setdefault(item.split or "unsplit", dict.fromkeys(per_label, 0))
            counts[name] += 1
        return DatasetSummary(
            n_items=len(self.items),
            n_files=len(self.files),
            n_groups=len({item.group for item in self.items}),
            per_label=per_label,
            per_split=per_split,
            n_missing=len(self.missing),
            n_unlabelled=len(self.unlabelled),
            n_unreadable=len(self.unreadable),
        )


def load_labelled_dataset(
    root: Path | str, *, labels_file: Path | str | None = None, verify: bool = False
) -> LabelledDataset:
    """Find the layout under ``root`` and list its labelled slices.

    Args:
        root: dataset folder.
        labels_file: a labels sheet to use instead of ``root/labels.{csv,xlsx}``; file names in
            it are resolved under ``root``.
        verify: decode every image (slow) instead of reading headers only, so that files whose
            pixel data is corrupt are found now rather than during training.

    Raises:
        ValueError: no recognisable layout, an ambiguous one, a sheet whose columns cannot be
            identified, conflicting labels for a file, or no labelled readable slice at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root {root} is not a folder")
    children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    dirs = [p for p in children if p.is_dir()]
    class_dirs = [d for d in dirs if d.name.lower() in CLASS_FOLDERS]
    split_dirs = [d for d in dirs if d.name.lower() in SPLIT_FOLDERS]
    sheets = [p for p in children if p.is_file() and p.name.lower() in LABEL_FILES]

    if labels_file is not None or sheets:
        if labels_file is None and len(sheets) > 1:
            raise ValueError(f"{root}: both {sheets[0].name} and {sheets[1].name}; keep one")
        if labels_file is None and (class_dirs or split_dirs):
            raise ValueError(
                f"{root}: has both {sheets[0].name} and class/split folders "
                f"({', '.join(d.name for d in class_dirs + split_dirs)}); pass labels_file= "
                "to use the sheet or remove it to use the folders"
            )
        sheet = Path(labels_file) if labels_file is not None else sheets[0]
        dataset = _from_sheet(root, sheet)
    elif split_dirs and class_dirs:
        raise ValueError(
            f"{root}: has both split folders ({', '.join(d.name for d in split_dirs)}) and "
            f"class folders ({', '.join(d.name for d in class_dirs)}); use one layout"
        )
    elif split_dirs:
        dataset = LabelledDataset(root, "split-folders")
        for split_dir in split_dirs:
            split = SPLIT_FOLDERS[split_dir.name.lower()]
            _add_class_folders(dataset, split_dir, split)
    elif class_dirs:
        dataset = LabelledDataset(root, "class-folders")
        _add_class_folders(dataset, root, None)
    else:
        raise ValueError(
            f"{root}: no labels.csv / labels.xlsx and no clean/ + artifact/ folders "
            f"(optionally under train/ val/ test/); found: "
            f"{', '.join(p.name for p in children) or 'nothing'}"
        )
    return _finish(dataset, verify=verify)


def _add_class_folders(dataset: LabelledDataset, parent: Path, split: str | None) -> None:
    class_dirs = [d for d in sorted(parent.iterdir()) if d.is_dir()]
    class_dirs = [d for d in class_dirs if d.name.lower() in CLASS_FOLDERS]
    if not class_dirs:
        raise ValueError(f"{parent}: split folder without clean/ or artifact/ sub-folders")
    labelled: set[Path] = set()
    for class_dir in class_dirs:
        label = CLASS_FOLDERS[class_dir.name.lower()]
        for path in iter_image_files(class_dir):
            labelled.add(path)
            group = default_group(path.relative_to(class_dir))
            dataset.items.append(LabelledItem(path, -1, label, group, split))
    dataset.unlabelled.extend(p for p in iter_image_files(parent) if p not in labelled)


def _from_sheet(root: Path, sheet: Path) -> LabelledDataset:
    rows, key_kind = read_label_sheet(sheet)
    dataset = LabelledDataset(root, "labels-file")
    targets = _TargetIndex(
        root, [p for p in iter_image_files(root) if p.resolve() != sheet.resolve()]
    )
    assigned: dict[Path, LabelRow] = {}
    for row in rows:
        files = targets.lookup(row, sheet)
        if not files:
            dataset.missing.append(row.key)
            continue
        for path in files:
            previous = assigned.setdefault(path, row)
            if (previous.label, previous.split) != (row.label, row.split):
                raise ValueError(
                    f"{sheet.name}: rows {previous.row} and {row.row} give {path.name} "
                    f"different labels/splits"
                )
            if previous is not row:
                continue
            if row.group is not None:
                group = row.group
            elif key_kind == "patient":
                group = row.key
            else:
                group = default_group(path.relative_to(root))
            dataset.items.append(LabelledItem(path, -1, row.label, group, row.split))
    dataset.unlabelled.extend(p for p in targets.files if p not in assigned)
    return dataset


def default_group(relative: Path) -> str:
    """First folder of a nested path (a patient/series folder), else the file stem."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    name = relative.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".npy"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return relative.stem


def _finish(dataset: LabelledDataset, *, verify: bool) -> LabelledDataset:
    """Expand each file's placeholder item (slice -1) into one item per slice."""
    expanded: list[LabelledItem] = []
    for item in dataset.items:
        try:
            n = len(read_slices(item.path)) if verify else count_slices(item.path)
        except UnreadableImage as exc:
            dataset.unreadable.append((item.path, str(exc).removeprefix(f"{item.path.name}: ")))
            continue
        expanded.extend(
            LabelledItem(item.path, k, item.label, item.group, item.split) for k in range(n)
        )
    dataset.items = expanded
    problems = [
        f"{n} {what}"
        for n, what in (
            (len(dataset.missing), "listed files missing"),
            (len(dataset.unlabelled), "files unlabelled"),
            (len(dataset.unreadable), "unreadable files skipped"),
        )
        if n
    ]
    if not expanded:
        raise ValueError(
            f"{dataset.root}: no labelled, readable image found ({', '.join(problems) or 'empty'})"
        )
    if problems:
        warnings.warn(f"{dataset.root.name}: {', '.join(problems)}", stacklevel=3)
    return dataset


def _norm(key: str) -> str:
    """Case-, slash- and leading-zero-insensitive form of a file/patient key."""
    key = key.strip().replace("\\", "/").lower().removeprefix("./").strip("/")
    if key.isdigit():
        return key.lstrip("0") or "0"
    return key


class _TargetIndex:
    """Maps sheet keys (relative path, file name, stem, folder path or name) to files."""

    def __init__(self, root: Path, files: list[Path]) -> None:
        self.files = files
        self._targets: dict[str, set[str]] = {}  # key -> relative paths of files/folders
        self._members: dict[str, list[Path]] = {}  # relative path -> files
        for path in files:
            rel = path.relative_to(root)
            self._members.setdefault(rel.as_posix(), []).append(path)
            stem = default_group(Path(rel.name))
            for key in (rel.as_posix(), rel.name, stem, rel.with_name(stem).as_posix()):
                self._targets.setdefault(_norm(key), set()).add(rel.as_posix())
            for depth in range(1, len(rel.parts)):
                folder = Path(*rel.parts[:depth])
                self._members.setdefault(folder.as_posix() + "/", []).append(path)
                for key in (folder.as_posix(), folder.name):
                    self._targets.setdefault(_norm(key), set()).add(folder.as_posix() + "/")

    def lookup(self, row: LabelRow, sheet: Path) -> list[Path]:
        parts = _norm(row.key).split("/")
        # also accept paths written on another machine: drop leading components
        for start in range(len(parts)):
            found = self._targets.get("/".join(parts[start:]))
            if found:
                break
        else:
            return []
        if len(found) > 1:
            examples = ", ".join(sorted(found)[:3])
            raise ValueError(
                f"{sheet.name} row {row.row}: {row.key!r} matches {len(found)} files/folders "
                f"({examples}); write a path relative to the dataset folder"
            )
        return self._members[next(iter(found))]
