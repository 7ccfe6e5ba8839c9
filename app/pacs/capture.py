"""Secondary-capture heatmaps: each flagged slice with the model's patch probabilities in red
over it (the web viewer's picture, ``app.api.render.heatmap_rgb``), as an RGB Secondary
Capture Image in the source's patient and study, so a PACS shows where the artifact was seen.

Each capture names its source slice (Source Image Sequence) and carries a UID derived from the
report's digest, like the SR. A slice whose stored file no longer decodes gets no capture (the
SR still names it).
"""

from __future__ import annotations

import logging

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DA, TM

from app import storage
from app.api.render import heatmap_rgb
from app.config import Settings

from .report import SeriesReport, SliceResult
from .sr import MANUFACTURER

logger = logging.getLogger(__name__)

#: the series number of the captures in the study (after the SR's 9901)
SC_SERIES_NUMBER = 9902
_AXES = (("L", "R"), ("P", "A"), ("H", "F"))  # + and - direction of patient x, y, z


def _letter(cosines: list[float]) -> str:
    """The patient direction (PS3.3 C.7.6.1.1.1) a row or column runs along: its main axis."""
    axis = int(np.argmax(np.abs(cosines)))
    return _AXES[axis][0 if cosines[axis] > 0 else 1]


def patient_orientation(header: Dataset) -> tuple[str, str]:
    """(row direction, column direction) from ImageOrientationPatient, else the header's
    PatientOrientation, else axial as displayed by convention (L, P)."""
    iop = header.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        values = [float(v) for v in iop]
        return _letter(values[:3]), _letter(values[3:])
    given = header.get("PatientOrientation")
    if given is not None and len(given) == 2 and all(given):
        return str(given[0]), str(given[1])
    return "L", "P"


def _pixels(settings: Settings, item: SliceResult) -> np.ndarray | None:
    from training.data import UnreadableImage, read_slices

    try:
        path = storage.resolve(settings.storage_dir, item.storage_path)
        return read_slices(path)[item.frame_index].pixels
    except (UnreadableImage, IndexError, ValueError, OSError) as exc:
        logger.warning("instance %s: no heatmap capture (%s)", item.instance_id, exc)
        return None


def build_captures(settings: Settings, report: SeriesReport) -> list[hd.sc.SCImage]:
    """One RGB secondary capture per flagged slice of ``report`` (in series order)."""
    headers = {str(h.SOPInstanceUID): h for h in report.headers}
    captures = []
    for number, item in enumerate(report.flagged, start=1):
        pixels = _pixels(settings, item)
        header = headers.get(item.sop_instance_uid)
        if pixels is None or header is None or not item.patch_map:
            continue
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=heatmap_rgb(pixels, np.asarray(item.patch_map)),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=report.uid("sc-series"),
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=report.uid("sc", item.sop_instance_uid, item.frame_number),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=patient_orientation(header),
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        sc.SeriesDescription = "amaqc artifact heatmaps"
        sc.ImageType = ["DERIVED", "SECONDARY"]
        sc.DerivationDescription = (
            f"artifact probability {item.probability:.3f} per image patch in red "
            f"({report.model_name}, threshold {report.threshold:.3f})"
        )[:1024]
        source = Dataset()
        source.ReferencedSOPClassUID = item.sop_class_uid
        source.ReferencedSOPInstanceUID = item.sop_instance_uid
        if item.frame_number is not None:
            source.ReferencedFrameNumber = item.frame_number
        sc.SourceImageSequence = [source]
        sc.ContentDate = DA(report.verdict_at.strftime("%Y%m%d"))
        sc.ContentTime = TM(report.verdict_at.strftime("%H%M%S"))
        captures.append(sc)
    return captures
