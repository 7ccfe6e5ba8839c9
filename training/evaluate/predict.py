"""Score every image under a path and write one CSV line per slice:
``file,probability,label,cnn_probability,acquisition,threshold`` (``probability`` and ``label``
from the detector served, ``cnn_probability`` AMAResNet's own; ``file`` relative to the path;
``#k`` marks slice k of a multi-slice file; label 1 = artifact, ``probability >= threshold``,
the threshold of the slice's acquisition family, ``model.acquisition``: from the DICOM header,
or the one asked for, else unknown and the pooled threshold)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from model import Predictor

from ..data.image_types import UnreadableImage
from ..data.readers import iter_image_files, read_slices

CSV_COLUMNS = ("file", "probability", "label", "cnn_probability", "acquisition", "threshold")


@dataclass
class PredictReport:
    output: Path
    files: int = 0
    slices: int = 0
    flagged: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def predict_path(
    path: Path,
    predictor: Predictor,
    output: Path,
    *,
    acquisition: str | None = None,
    on_file: Callable[[Path, int], None] | None = None,
) -> PredictReport:
    """Predict all images under ``path`` (a file, or a folder searched recursively).

    ``acquisition``: the family of every image (``model.acquisition``); None: each DICOM
    file's own, from its header (other formats: unknown).

    Unreadable files are skipped and listed in the report, never fatal. ``on_file(path, total)``
    is called after each file (for progress bars).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = list(iter_image_files(path))
    report = PredictReport(Path(output))
    report.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = report.output.with_name(report.output.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for file in files:
            rel = file.name if path.is_file() else file.relative_to(path).as_posix()
            try:
                slices = read_slices(file)
                preds = predictor.predict([s.pixels for s in slices])
            except (UnreadableImage, ValueError) as exc:
                report.skipped.append((file, str(exc).removeprefix(f"{file.name}: ")))
            else:
                report.files += 1
                for s, p in zip(slices, preds, strict=True):
                    name = rel if len(slices) == 1 else f"{rel}#{s.index}"
                    family = acquisition or s.meta.get("acquisition")
                    threshold = predictor.threshold_for(family)
                    label = int(p.probability >= threshold)
                    writer.writerow(
                        [
                            name,
                            f"{p.probability:.6f}",
                            label,
                            "" if p.cnn_probability is None else f"{p.cnn_probability:.6f}",
                            family or "",
                            f"{threshold:.6f}",
                        ]
                    )
                    report.slices += 1
                    report.flagged += label
            if on_file is not None:
                on_file(file, len(files))
    tmp.replace(report.output)
    return report
