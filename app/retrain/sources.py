"""Where a training job's data comes from.

* ``dataset``: a labelled folder on the server, under the data dir. The path comes from an
  admin, but it still never reaches outside the data dir: ``..`` components, absolute paths
  elsewhere and symlinks (the folder itself or anything inside it) that resolve outside are
  refused, naming the problem.
* ``reviews``: the slices radiographers reviewed, with their labels, by the rules of the label
  export (:func:`reviewed_slices`); with no review yet, such a job is refused with 422.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session


class DataSourceError(ValueError):
    """A data source that cannot be used, with the reason (a 422 at the API)."""


def resolve_dataset(data_dir: Path, path: str, *, walk: bool = False) -> Path:
    """The absolute folder for ``path`` (relative to ``data_dir``, or absolute inside it).

    With ``walk=True`` every symlink below the folder is checked too (the worker does this
    before reading; the API checks only the folder itself, which is cheap).
    """
    root = data_dir.resolve()
    if not path.strip() or "\x00" in path:
        raise DataSourceError("dataset path is empty")
    raw = Path(path)
    if ".." in raw.parts:
        raise DataSourceError(
            f"dataset path {path!r} contains '..'; give a folder under the data dir, relative to it"
        )
    candidate = raw if raw.is_absolute() else root / raw
    if not candidate.absolute().is_relative_to(root):
        raise DataSourceError(
            f"dataset path {path!r} is outside the data dir; training reads only folders "
            "under it (copy or link the data into it)"
        )
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise DataSourceError(f"dataset path {path!r} does not exist under the data dir") from None
    except OSError as exc:
        raise DataSourceError(f"dataset path {path!r} cannot be read ({exc.strerror})") from None
    if not resolved.is_relative_to(root):
        raise DataSourceError(
            f"dataset path {path!r} is a symlink that resolves outside the data dir; "
            "training reads only folders under it"
        )
    if resolved == root:
        raise DataSourceError("dataset path must be a folder under the data dir, not the dir")
    if not resolved.is_dir():
        raise DataSourceError(f"dataset path {path!r} is not a folder")
    if walk:
        _check_links(root, resolved, path)
    return resolved


def _check_links(root: Path, folder: Path, shown: str) -> None:
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            entry = Path(dirpath) / name
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                rel = entry.relative_to(folder).as_posix()
                raise DataSourceError(
                    f"dataset {shown!r}: {rel} is a symlink that resolves outside the data dir"
                )


@dataclass(frozen=True)
class ReviewedSlice:
    """One reviewed slice: where its pixels are stored and the label a radiographer gave.

    ``storage_path`` is relative to the object store (``Instance.storage_path``) and
    ``frame_index`` the slice within that file; ``series_id`` keeps a series' slices in one
    split. ``label``: 1 = artifact, 0 = clean. ``label_by``: who set a slice label (``reader``,
    or ``model`` for the model's call the reader accepted and confirmed), ``""`` when the label
    follows from a series reviewed clean.
    """

    instance_id: int
    series_id: int
    storage_path: str
    frame_index: int
    label: int
    label_by: str = ""


def reviewed_slices(session: Session) -> list[ReviewedSlice]:
    """Every labelled slice of the reviewed series, by the rules of the label export
    (:func:`app.db.reviews.export_slices`: the newest review of each series; a slice's own label
    when the reviewer gave one, else every slice of a series reviewed clean is clean). A slice
    label accepted from the model counts only when the reader confirmed it
    (:func:`app.db.reviews.usable_slice_label`)."""
    from app.db.reviews import export_slices

    return [
        ReviewedSlice(
            instance_id=item.instance.id,
            series_id=item.series.id,
            storage_path=item.instance.storage_path,
            frame_index=item.instance.frame_index,
            label=item.label,
            label_by=item.label_by,
        )
        for item in export_slices(session)
    ]


def unconfirmed_model_labels(session: Session) -> int:
    """Slice labels of the newest reviews accepted from the model but not confirmed by the
    reader: left out of the training data (the job's source summary says how many)."""
    from app.db.reviews import newest_reviews, usable_slice_label

    return sum(
        not usable_slice_label(item, review)
        for review in newest_reviews(session)
        for item in review.slices
    )
