"""What the service reads from a DICOM header besides the pixels: the display window
(WindowCenter / WindowWidth), the patient / study / series context shown to readers, and the
series' acquisition family (``model.acquisition``), which picks the model's threshold for it.

Torch-free (pydicom and ``model.acquisition`` only). Patient identifiers read here are stored
and shown to radiographer and admin roles; they are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.acquisition import from_header as acquisition_of


@dataclass(frozen=True)
class HeaderContext:
    """The reader-facing context of one DICOM object (None: the tag is absent or empty).

    ``acquired_at`` is ISO text in the scanner's local time (DICOM times carry no zone):
    AcquisitionDateTime, else AcquisitionDate + AcquisitionTime, else the series' or study's
    date and time. ``acquisition`` is the acquisition family of
    :func:`model.acquisition.from_header` (``epi``, ``non_epi``; None when the header says
    neither).
    """

    patient_id: str | None = None
    patient_name: str | None = None
    accession_number: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    station_name: str | None = None
    manufacturer: str | None = None
    manufacturer_model: str | None = None
    acquired_at: str | None = None
    acquisition: str | None = None

    @property
    def scanner(self) -> str | None:
        """The scanner's name: ManufacturerModelName, else StationName, else Manufacturer
        (None only when the header names none of them)."""
        return self.manufacturer_model or self.station_name or self.manufacturer or None


def _text(ds: Any, keyword: str, limit: int) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if keyword == "PatientName":  # PN: "Doe^Jane" -> "Doe, Jane" as people write it
        parts = [p for p in str(value).split("^") if p.strip()]
        text = ", ".join(p.strip() for p in parts[:2]) + (
            " " + " ".join(p.strip() for p in parts[2:]) if len(parts) > 2 else ""
        )
    else:
        text = str(value)
    text = " ".join(text.split())
    return text[:limit] or None


def _iso_datetime(date: str | None, time: str | None) -> str | None:
    """``20260304`` + ``134501.25`` -> ``2026-03-04T13:45:01``; None when the date is not one."""
    date = (date or "").strip()
    if len(date) < 8 or not date[:8].isdigit():
        return None
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    digits = "".join(c for c in (time or "").split(".")[0].strip() if c.isdigit())
    if len(digits) >= 4:
        out += f"T{digits[:2]}:{digits[2:4]}:{(digits[4:6] or '00').ljust(2, '0')}"
    return out


def _acquired_at(ds: Any) -> str | None:
    stamp = str(ds.get("AcquisitionDateTime", "") or "").strip()
    if stamp:
        found = _iso_datetime(stamp[:8], stamp[8:])
        if found:
            return found
    for date, time in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        found = _iso_datetime(str(ds.get(date, "") or ""), str(ds.get(time, "") or ""))
        if found:
            return found
    return None


def header_context(ds: Any) -> HeaderContext:
    """The context of a pydicom Dataset (read with ``stop_before_pixels``)."""
    return HeaderContext(
        patient_id=_text(ds, "PatientID", 64),
        patient_name=_text(ds, "PatientName", 200),
        accession_number=_text(ds, "AccessionNumber", 64),
        study_description=_text(ds, "StudyDescription", 200),
        series_description=_text(ds, "SeriesDescription", 200),
        protocol_name=_text(ds, "ProtocolName", 200),
        station_name=_text(ds, "StationName", 200),
        manufacturer=_text(ds, "Manufacturer", 200),
        manufacturer_model=_text(ds, "ManufacturerModelName", 200),
        acquired_at=_acquired_at(ds),
        acquisition=acquisition_of(ds),
    )


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        seq = (
            list(value)
            if not isinstance(value, str | bytes) and hasattr(value, "__iter__")
            else [value]
        )
        return float(seq[0]) if seq else None
    except (TypeError, ValueError):
        return None


def display_window(path: Path, frame: int = 0) -> tuple[float, float] | None:
    """(WindowCenter, WindowWidth) of a DICOM file for ``frame`` (the first of several
    windows; an enhanced object's per-frame or shared FrameVOILUTSequence), in the modality's
    units, i.e. after RescaleSlope/Intercept; None without one, or for a file that is not
    DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    holders = [ds]
    for name, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(name)
        if groups and len(groups) > index and "FrameVOILUTSequence" in groups[index]:
            holders.insert(0, groups[index].FrameVOILUTSequence[0])
    for holder in holders:
        center = _first_number(holder.get("WindowCenter"))
        width = _first_number(holder.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            return center, width
    return None
