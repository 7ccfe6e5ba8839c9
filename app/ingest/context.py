"""The patient, study and series context of a new series, from its DICOM header
(:func:`app.dicom_header.header_context`): written on the Study and Series rows when the series
is created, shown to radiographer and admin roles only, never logged.

Files without a DICOM header (PNG, JPEG, NIfTI) carry no context; a study keeps the first
values it was given (a later series of the same study fills only what is still empty).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import Series, Study
from app.dicom_header import HeaderContext, header_context

from .decode import DecodedFile

_STUDY_FIELDS = ("patient_id", "patient_name", "accession_number", "study_description")
_SERIES_FIELDS = (
    "series_description",
    "protocol_name",
    "station_name",
    "manufacturer",
    "manufacturer_model",
    "acquired_at",
)


def first_header(files: list[DecodedFile]) -> HeaderContext | None:
    """The context of the first DICOM file of ``files`` (None when there is none)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for decoded in files:
        if decoded.ext != ".dcm":
            continue
        try:
            ds = pydicom.dcmread(decoded.path, stop_before_pixels=True, force=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        return header_context(ds)
    return None


def fill_context(
    session: Session, series: Series, files: list[DecodedFile], *, scanner_given: bool
) -> None:
    """Write the header context of ``files`` on a new ``series`` and on its study (fields the
    study already has are kept). The scanner is named from the header (ManufacturerModelName,
    else StationName, else Manufacturer) unless the upload's form named it (``scanner_given``)."""
    context = first_header(files)
    if context is None:
        return
    for name in _SERIES_FIELDS:
        setattr(series, name, getattr(context, name))
    if not scanner_given and context.scanner:
        series.scanner = context.scanner
    study = session.get(Study, series.study_id) if series.study_id is not None else None
    if study is not None:
        for name in _STUDY_FIELDS:
            if getattr(study, name) is None:
                setattr(study, name, getattr(context, name))
    session.flush()
