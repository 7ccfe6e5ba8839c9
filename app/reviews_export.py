"""Reviews as training labels, in the dataset layout ``amaqc train --data DIR`` reads.

``labels.zip`` unpacks to a dataset folder: ``labels.csv`` (a labels sheet, see
``training/data/label_sheet.py``) next to the images it names,
``study-<id>/series-<id>/instance-<id>.<ext>``. A single-frame original is copied as it was
stored; a frame of a multi-frame file becomes a float32 ``.npy`` of its pixels, so every file
has exactly one label. The first folder (the study) is the group that must not straddle
train/val/test: the service stores no patient id, and a study belongs to one patient.
``format=csv`` is the same ``labels.csv`` alone.

``label_source`` is ``slice`` (the review labelled that slice) or ``series`` (every slice of a
series reviewed clean); ``slice_label_by`` says who set a slice label: ``reader``, or ``model``
(the reader accepted the model's call and confirmed it). A model-accepted label the reader did
not confirm is left out: the model would learn its own mistakes.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from typing import IO

import numpy as np

from app import storage
from app.config import Settings
from app.db.reviews import ExportSlice

COLUMNS = (
    "file",
    "label",
    "label_source",
    "slice_label_by",
    "series_label",
    "model_label",
    "model_probability",
    "model_version",
    "series_id",
    "instance_id",
    "reviewer",
    "reviewed_at",
    "comment",
)
NAMES = {0: "clean", 1: "artifact"}


def file_name(item: ExportSlice) -> str:
    """Where the slice's image lies in the dataset folder."""
    inst = item.instance
    ext = ".npy" if item.shares_file else _extension(inst.storage_path)
    return f"study-{item.series.study_id or 0}/series-{inst.series_id}/instance-{inst.id}{ext}"


def _extension(storage_path: str) -> str:
    for ext in sorted(storage.EXTENSIONS, key=len, reverse=True):
        if storage_path.endswith(ext):
            return ext
    raise ValueError(f"stored object {storage_path!r} has no known extension")


def labels_csv(items: list[ExportSlice]) -> str:
    """The labels sheet: one row per labelled slice, ``file`` and ``label`` first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in items:
        review = item.review
        writer.writerow(
            [
                file_name(item),
                NAMES[item.label],
                item.source,
                item.label_by,
                NAMES[review.label],
                "" if review.model_label is None else NAMES[review.model_label],
                "" if review.model_probability is None else f"{review.model_probability:.4f}",
                item.model_version or "",
                item.instance.series_id,
                item.instance.id,
                review.reviewer,
                review.created_at.isoformat(timespec="seconds"),
                # one line per row keeps the sheet easy to read by eye and by csv sniffers
                " ".join(review.comment.split()),
            ]
        )
    return out.getvalue()


def labels_zip(settings: Settings, items: list[ExportSlice]) -> IO[bytes]:
    """``labels.csv`` and the images, as a ZIP in a temporary file (rewound)."""
    from training.data import read_slices

    spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labels.csv", labels_csv(items))
        for item in items:
            source = storage.resolve(settings.storage_dir, item.instance.storage_path)
            if item.shares_file:
                buffer = io.BytesIO()
                pixels = read_slices(source)[item.instance.frame_index].pixels
                np.save(buffer, np.asarray(pixels, dtype=np.float32))
                zf.writestr(file_name(item), buffer.getvalue())
            else:
                zf.write(source, file_name(item))
    spool.seek(0)
    return spool
