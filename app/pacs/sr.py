"""The DICOM Structured Report of a series verdict (Comprehensive SR, built with highdicom).

Content tree (every concept not in DCM is in the private coding scheme ``99AMAQC``)::

    CONTAINER  MR image quality control report
      CODE       Image quality verdict = Artifact | Artifact-free
      NUM        Artifact probability (the series', {ratio})
      NUM        Decision threshold
      TEXT       Series rule (any, count:K, fraction:F)
      NUM        Number of slices / Number of flagged slices
      TEXT       (111001, DCM) Algorithm Name = AMAResNet (amaqc)
      TEXT       (111003, DCM) Algorithm Version = the model version's name
      TEXT       Model architecture
      IMAGE      Flagged slice -> SOP Class / Instance UID (and frame), one per flagged slice
      CONTAINER  Slice quality, one per slice
        IMAGE      (121112, DCM) Source of Measurement -> the slice
        CODE       Image quality verdict
        NUM        Artifact probability
        NUM        one per image-quality metric of ``model.iqm`` (code value = its name)

The report inherits patient and study from the source images (highdicom's ``evidence``), so a
PACS files it beside them.
"""

from __future__ import annotations

import io

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.valuerep import DA, TM

from model.iqm import IQM_INFO

from .report import SeriesReport

SCHEME = "99AMAQC"
MANUFACTURER = "amaqc"
ALGORITHM = "AMAResNet (amaqc)"
#: series numbers of what amaqc adds to a study (high, so they sort after the scanner's)
SR_SERIES_NUMBER = 9901
UNITLESS = Code("1", "UCUM", "no units")

REPORT = Code("AMAQC-QC-REPORT", SCHEME, "MR image quality control report")
VERDICT = Code("AMAQC-VERDICT", SCHEME, "Image quality verdict")
ARTIFACT = Code("AMAQC-ARTIFACT", SCHEME, "Artifact")
CLEAN = Code("AMAQC-CLEAN", SCHEME, "Artifact-free")
PROBABILITY = Code("AMAQC-PROBABILITY", SCHEME, "Artifact probability")
THRESHOLD = Code("AMAQC-THRESHOLD", SCHEME, "Decision threshold")
RULE = Code("AMAQC-RULE", SCHEME, "Series rule")
SLICES = Code("AMAQC-SLICES", SCHEME, "Number of slices")
FLAGGED_COUNT = Code("AMAQC-FLAGGED-COUNT", SCHEME, "Number of flagged slices")
FLAGGED_SLICE = Code("AMAQC-FLAGGED-SLICE", SCHEME, "Flagged slice")
ARCH = Code("AMAQC-ARCH", SCHEME, "Model architecture")
SLICE = Code("AMAQC-SLICE", SCHEME, "Slice quality")
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
SOURCE = Code("121112", "DCM", "Source of Measurement")


def iqm_code(name: str) -> Code:
    """The concept of one ``model.iqm`` metric: its name as code value, its label as meaning."""
    info = IQM_INFO.get(name)
    return Code(name[:16], SCHEME, (info.label if info else name)[:64])


def _num(name: Code, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(
        name=name,
        value=float(f"{value:.6g}"),  # DS holds 16 characters
        unit=UNITLESS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _verdict(flagged: bool) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(
        name=VERDICT,
        value=ARTIFACT if flagged else CLEAN,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _image(
    name: Code, sop_class: str, sop_instance: str, frame: int | None
) -> hd.sr.ImageContentItem:
    return hd.sr.ImageContentItem(
        name=name,
        referenced_sop_class_uid=sop_class,
        referenced_sop_instance_uid=sop_instance,
        referenced_frame_numbers=frame,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def content(report: SeriesReport) -> hd.sr.ContainerContentItem:
    """The content tree above for ``report``."""
    root = hd.sr.ContainerContentItem(name=REPORT)
    items: list[hd.sr.ContentItem] = [
        _verdict(bool(report.label)),
        _num(PROBABILITY, report.probability),
        _num(THRESHOLD, report.threshold),
        _text(RULE, report.rule),
        _num(SLICES, len(report.slices)),
        _num(FLAGGED_COUNT, report.flagged_count),
        _text(ALGORITHM_NAME, ALGORITHM),
        _text(ALGORITHM_VERSION, report.model_name),
        _text(ARCH, report.model_arch),
    ]
    for s in report.flagged:
        items.append(_image(FLAGGED_SLICE, s.sop_class_uid, s.sop_instance_uid, s.frame_number))
    for s in report.slices:
        group = hd.sr.ContainerContentItem(
            name=SLICE, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        group.ContentSequence = hd.sr.ContentSequence(
            [
                _image(SOURCE, s.sop_class_uid, s.sop_instance_uid, s.frame_number),
                _verdict(s.flagged),
                _num(PROBABILITY, s.probability),
                *(_num(iqm_code(name), value) for name, value in sorted(s.iqms.items())),
            ],
            is_root=False,
        )
        items.append(group)
    root.ContentSequence = hd.sr.ContentSequence(items, is_root=False)
    return root


def build_sr(report: SeriesReport) -> hd.sr.ComprehensiveSR:
    """The SR of ``report``: the same UIDs for the same verdict (see ``app.pacs.report``);
    content date and time are the verdict's (UTC)."""
    sr = hd.sr.ComprehensiveSR(
        evidence=report.headers,
        content=content(report),
        series_instance_uid=report.uid("sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=report.uid("sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="amaqc image quality report",
    )
    sr.ContentDate = DA(report.verdict_at.strftime("%Y%m%d"))
    sr.ContentTime = TM(report.verdict_at.strftime("%H%M%S"))
    sr.SoftwareVersions = report.model_name[:64]
    return sr


def to_bytes(dataset: Dataset) -> bytes:
    """``dataset`` as a DICOM Part 10 file (preamble, ``DICM``, file meta)."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
